"""The one prompt encoder (asva_jax.models.prompts.PromptEncoder) as training builds it
(`training.trained.prompt_encoder`): stored class encodings, stand-ins from scratch, and the
one-line error for a prompt a checkpoint cannot encode."""

import numpy as np
import pytest

from asva_jax.errors import AsvaError
from asva_jax.training.defaults import base_config
from asva_jax.training.trained import prompt_encoder


def test_from_a_checkpoint_stored_encodings_and_a_clear_error(tmp_path):
  from convert.clip_text import save_text_encodings
  stored = {"": np.zeros((77, 4), np.float32), "cats": np.ones((77, 4), np.float32)}
  save_text_encodings(stored, tmp_path / "text_encodings")
  config = base_config()
  config.model.checkpoint = str(tmp_path)
  encoder = prompt_encoder(config, dim=4)
  assert list(encoder.used) == [""]  # the null text is asked for at once
  np.testing.assert_array_equal(encoder.batch([b"cats", "cats", ""]), np.stack([stored["cats"]] * 2 + [stored[""]]))
  assert sorted(encoder.used) == ["", "cats"]
  with pytest.raises(AsvaError, match=f"--config.model.checkpoint={tmp_path}: no text encoding for prompt "
                                      "'dogs' and no text_encoder/ to compute one"):
    encoder["dogs"]


def test_from_scratch_stand_ins_are_fixed_per_seed_and_prompt():
  config = base_config()
  a, b = prompt_encoder(config, dim=8), prompt_encoder(config, dim=8)
  config.seed += 1
  other_seed = prompt_encoder(config, dim=8)
  assert a["cats"].shape == (77, 8) and a["cats"].dtype == np.float32
  np.testing.assert_array_equal(a["cats"], b["cats"])
  assert not np.allclose(a["cats"], a["dogs"]) and not np.allclose(a["cats"], other_seed["cats"])
  assert not np.allclose(a[""], a["cats"])  # the null text is its own stand-in
