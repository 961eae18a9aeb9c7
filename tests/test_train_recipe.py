"""The AVSync15 recipe's own input paths, one optimizer step each (configs/avsyncd.py):

* from a converted checkpoint folder (`model.checkpoint`: unet/, vae/, audio_encoder/,
  text_encodings/ of tiny random models, as the converters write them), frames through
  the VAE encoder inside the step;
* the same, from shards that carry cached VAE moments (`data_prep.build --vae-latents`),
  so the step samples the latent from the moments instead.

Both read the same clips with the same seed, and the stored moments are the VAE's
encoding of the stored frames, so the two losses agree up to the moments' float16
storage. The second run's checkpoint holds another random VAE: had its step encoded
the frames instead of using the moments, its loss would differ. Departures from the
recipe, for CPU: float32 compute, no remat, batch 2.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from tests.training_fixtures import build_shards, load_config_file, trained_params, use_cache

SIZE = (16, 16)  # the shared synthetic shards' frames; the tiny VAE's factor 4 -> 4 x 4 latents
OVERRIDES = {"train.num_steps": 1, "train.batch_size": 2, "train.log_every": 1, "train.checkpoint_every": 1,
             "train.milestones": (), "precision.compute": "float32", "precision.frozen": "float32",
             "remat": "none", "xla_backend_optimization_level": 0, "log.progress": False,
             "log.tensorboard": False}
# float16 moments: relative rounding 2**-11 in the latent; the loss moved 5e-6 (relative) here, and
# 4e-2 when the step encoded the frames with the other VAE.
LOSS_RTOL = 1e-4


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
  """A converted folder (tests/sampling_checkpoint.py) with text encodings of the synthetic prompts."""
  from convert.clip_text import save_text_encodings
  from data_prep.synthetic import class_spec
  from tests.sampling_checkpoint import TEXT_DIM, write_checkpoint
  root = write_checkpoint(tmp_path_factory.mktemp("recipe") / "ckpt", seed=3)
  shutil.rmtree(root / "text_encodings")
  rng = np.random.default_rng(3)
  prompts = [""] + [class_spec(c).prompt for c in range(3)]
  save_text_encodings({p: rng.standard_normal((77, TEXT_DIM)).astype(np.float32) for p in prompts},
                      root / "text_encodings")
  return root


@pytest.fixture(scope="module")
def frame_shards(tmp_path_factory):
  return build_shards(tmp_path_factory)


@pytest.fixture(scope="module")
def moment_shards(tmp_path_factory, frame_shards, ckpt):
  """The same videos, split and frame size as `frame_shards`, built with --vae-latents."""
  from data_prep.build import BuildConfig, build
  out = tmp_path_factory.mktemp("vae_latent_shards")
  build(BuildConfig(dataset="avsync15", root=str(frame_shards.parent / "synthetic"), split="train",
                    out=str(out), size=SIZE, name="synthetic", vae_latents=str(ckpt)),
        num_workers=0, progress=False)
  return out


def recipe_config(ckpt, data_dir):
  config = load_config_file("avsyncd")
  config.model.checkpoint = str(ckpt)
  config.data.dir = str(data_dir)
  for key, value in OVERRIDES.items():
    node = config
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  return config


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory, ckpt, frame_shards):
  from asva_jax.training.trainer import train
  use_cache(tmp_path_factory)
  workdir = tmp_path_factory.mktemp("recipe_vae") / "run"
  return workdir, train(recipe_config(ckpt, frame_shards), workdir)


def test_one_step_from_a_converted_checkpoint(vae_run, ckpt):
  workdir, records = vae_run
  assert [r["step"] for r in records] == [1] and np.isfinite(records[0]["loss"])
  assert (workdir / "checkpoints" / "1").is_dir()
  config = recipe_config(ckpt, "")
  start, trained = trained_params(workdir, 0), trained_params(workdir, 1)  # step 0 = the folder's weights
  assert start.keys() == trained.keys() and len(start) > 0
  # AdamW's first step moves every element by lr (|m / sqrt(v)| = 1) plus the decay: so the step
  # started from the checkpoint's weights and updated all of them.
  lr, decay = config.train.learning_rate, config.train.weight_decay
  moved = []
  for path in start:
    delta = np.abs(trained[path] - start[path])
    assert np.all(delta <= lr * (1 + decay * np.abs(start[path])) * 1.001), path
    moved.append((delta > 0.5 * lr).ravel())
  assert np.mean(np.concatenate(moved)) > 0.9


def other_vae(ckpt, folder):
  """A copy of `ckpt` whose vae/ has the same shapes and other random weights."""
  from flax import nnx
  from asva_jax.component_folders import save_module
  from asva_jax.models.random_weights import randomized
  from asva_jax.models.vae import AutoencoderKL, VAEConfig
  from tests.sampling_checkpoint import VAE
  shutil.copytree(ckpt, folder)
  shutil.rmtree(folder / "vae")
  config = VAEConfig(**VAE)
  save_module(folder / "vae", randomized(nnx.eval_shape(lambda: AutoencoderKL(config, rngs=nnx.Rngs(0))), 99),
              config.to_diffusers())
  return folder


def test_one_step_from_cached_vae_moments_equals_the_vae_step(vae_run, ckpt, moment_shards, tmp_path,
                                                            tmp_path_factory):
  from asva_jax.data import open_split
  from asva_jax.training.trainer import train
  assert "vae_mean" in open_split(str(moment_shards), "train", "synthetic")[0]
  use_cache(tmp_path_factory)
  records = train(recipe_config(other_vae(ckpt, tmp_path / "ckpt"), moment_shards), tmp_path / "run")
  assert [r["step"] for r in records] == [1]
  np.testing.assert_allclose(records[0]["loss"], vae_run[1][0]["loss"], rtol=LOSS_RTOL)
