"""AVSync classifier (RelSync/AlignSync): parity with the original (fixture `avsync_classifier/`),
widths from the tensors, .bin files, loader errors. (The 224-px input is covered by
tests/test_eval_metrics.py::test_end_to_end, whose scores come from 224 x 224 clips.)"""

import json
import shutil
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from safetensors.numpy import load_file, save_file

from asva_jax.errors import AsvaError
from asva_jax.eval import load_avsync_classifier

FIXTURE = Path(__file__).parent / "data" / "eval" / "avsync_classifier"
MODULES = FIXTURE / "modules"
RTOL = 1e-4


@pytest.fixture(scope="module")
def io():
  return dict(np.load(FIXTURE / "io.npz"))


@pytest.fixture(scope="module")
def model():
  return load_avsync_classifier(MODULES)


def assert_close(actual, expected, rtol=RTOL):
  actual = np.asarray(actual, np.float64)
  assert actual.shape == expected.shape
  err = np.abs(actual - expected).max() / np.abs(expected).max()
  assert err < rtol, err


def channels_last(video):
  return jnp.asarray(np.transpose(video, (0, 2, 3, 4, 1)))


def test_widths_from_tensors(model):
  dims = json.loads((FIXTURE / "dims.json").read_text())
  widths, head = dims["widths_for_64_128_256_512"], dims["head_dim"]
  assert model.audio_encoder.block4.conv2.kernel.shape[-1] == widths[-1]
  assert model.video_encoder.conv3x[0].res_conv.kernel.shape[-2:] == tuple(widths[:2])
  assert model.video_encoder.conv5x[1].out_bn.weight.shape == (widths[-1],)
  assert model.head.fc[0].kernel.shape == (2 * head, head)


@pytest.fixture(scope="module")
def forward(model):
  return nnx.jit(lambda m, mel, video: (m.audio_encoder(mel), m.video_encoder(video), m(mel, video)))


def test_small_clip(model, forward, io):
  """40 x 48 frames: odd sizes through every stride (20x24 -> ... -> 2x2, 12 -> 6 -> 3 -> 2 frames)."""
  audio_emb, video_emb, score = forward(model, jnp.asarray(io["audio"][:, 0]), channels_last(io["video"]))
  assert_close(audio_emb, io["audio_emb"])
  assert_close(video_emb, io["video_emb"])
  assert_close(score, io["score"])


def test_bin_files(tmp_path, model):
  """The original loader reads `diffusion_pytorch_model.bin`; so do we (weights_only)."""
  for name in ("audio_encoder", "video_encoder", "head"):
    (tmp_path / name).mkdir()
    tensors = {k: torch.from_numpy(v) for k, v in
               load_file(str(MODULES / name / "diffusion_pytorch_model.safetensors")).items()}
    torch.save(tensors, tmp_path / name / "diffusion_pytorch_model.bin")
  from_bin = nnx.to_flat_state(nnx.state(load_avsync_classifier(tmp_path)))
  expected = dict(nnx.to_flat_state(nnx.state(model)))
  assert len(from_bin) == len(expected)
  for path, var in from_bin:
    np.testing.assert_array_equal(np.asarray(var.get_value()), np.asarray(expected[path].get_value()))


def test_errors(tmp_path):
  with pytest.raises(AsvaError, match="no such folder"):
    load_avsync_classifier(tmp_path / "modules")
  shutil.copytree(MODULES, tmp_path / "modules")
  shutil.rmtree(tmp_path / "modules" / "head")
  with pytest.raises(AsvaError, match="head"):
    load_avsync_classifier(tmp_path / "modules")
  shutil.copytree(MODULES / "head", tmp_path / "modules" / "head")
  path = tmp_path / "modules" / "video_encoder" / "diffusion_pytorch_model.safetensors"
  sd = load_file(str(path))
  del sd["conv4x.1.tmp_bn1.running_var"]
  save_file(sd, str(path))
  with pytest.raises(AsvaError, match="conv4x.1.tmp_bn1.running_var"):
    load_avsync_classifier(tmp_path / "modules")
