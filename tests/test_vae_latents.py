"""data_prep.build --vae-latents: stored moments = the VAE's encoding of the stored frames, and the
loader hands out the moments of exactly the frames (and flip) of each clip."""

import json
import pickle
import subprocess
import sys

import jax
import numpy as np
import pytest
import torch
from flax import nnx

from asva_jax.data import eval_loader, open_split, select_frames, train_stream
from asva_jax.data.features import VAE_KEYS, frame_times
from asva_jax.data.transforms import decode_image
from asva_jax.models.vae import load_vae
from data_prep import build as build_lib
from data_prep import latents, sources
from tests import data_pipeline_fixtures as fx
from tests.reference_models import TINY_VAE, tiny_vae_checkpoint

# Four blocks: the SD1.5 VAE's factor 8, so 48 x 64 frames -> 6 x 8 latents (not square, so
# a swapped H/W would show).
VAE = dict(TINY_VAE, block_out_channels=(8, 8, 16, 16), down_block_types=("DownEncoderBlock2D",) * 4,
           up_block_types=("UpDecoderBlock2D",) * 4)
LATENT = (fx.BUILD_SIZE[0] // 8, fx.BUILD_SIZE[1] // 8, 4)
SPLIT = "test"  # 3 videos: enough, and half the work of the train split
# float16 storage: relative rounding 2**-11; the rest covers different batch shapes in float32.
RTOL, ATOL = 1e-3, 1e-5


def original_vae_input(frames):
  """The original's mapping, written out: [0, 1] float frames, then (x - 0.5) / 0.5 (docs/reference.md §1.1 step 2)."""
  x = frames.astype(np.float32) / np.float32(255)
  return (x - np.float32(0.5)) / np.float32(0.5)


@pytest.fixture(scope="module")
def torch_and_ckpt(tmp_path_factory):
  return tiny_vae_checkpoint(tmp_path_factory.mktemp("vae"), VAE, seed=5)


@pytest.fixture(scope="module")
def torch_vae(torch_and_ckpt):
  return torch_and_ckpt[:2]


@pytest.fixture(scope="module")
def ckpt(torch_and_ckpt):
  return torch_and_ckpt[2]


@pytest.fixture(scope="module")
def reference(ckpt):
  """The JAX VAE's posterior moments of uint8 frames, computed independently of data_prep."""
  vae = load_vae(ckpt)
  fn = nnx.jit(lambda vae, x: vae.encode(x))

  def moments(frames):  # 12 frames (a clip) at a time, so it compiles once
    n, pad = len(frames), -len(frames) % 12
    x = original_vae_input(np.concatenate([frames, frames[:pad]]) if pad else frames)
    out = [fn(vae, x[i:i + 12]) for i in range(0, len(x), 12)]
    return tuple(np.concatenate([np.asarray(o[k]) for o in out])[:n] for k in (0, 1))
  return moments


@pytest.fixture(scope="module")
def shards(tmp_path_factory, ckpt):
  """The synthetic dataset's test split built by the command line, JPEG frames, with --vae-latents."""
  root = fx.synthetic_root(tmp_path_factory)
  out = tmp_path_factory.getbasetemp() / "synthetic_vae_shards"
  cmd = [sys.executable, "-m", "data_prep.build", "--dataset", "avsync15", f"--root={root}",
         f"--split={SPLIT}", f"--out={out}", "--size=48,64", "--num-workers=0", "--videos-per-shard=2",
         f"--vae-latents={ckpt}"]
  done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-3000:]
  summary = json.loads((out / f"summary-avsync15-{SPLIT}.json").read_text())
  assert summary["num_written"] == fx.NUM_CLASSES and summary["num_skipped"] == 0, summary["skipped"]
  return out


def test_vae_input_is_the_originals_mapping():
  u = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, axis=-1)
  x = latents.vae_input(u)
  assert x.dtype == np.float32 and x.min() == -1.0 and x.max() == 1.0
  np.testing.assert_array_equal(x, original_vae_input(u))
  np.testing.assert_allclose(x, torch.from_numpy(u).float().div(255).sub(0.5).div(0.5).numpy(), atol=0)


def test_records_store_channels_last_float16_moments(shards):
  source = open_split(shards, SPLIT)
  features = json.loads(next(shards.glob("*/1.0.0/features.json")).read_text())
  assert set(VAE_KEYS) <= set(features["featuresDict"]["features"])
  for i in range(len(source)):
    record = source[i]
    num_frames = len(record["frames"])
    for key in VAE_KEYS:
      assert record[key].shape == (num_frames,) + LATENT and record[key].dtype == np.float16, key
      assert np.isfinite(record[key]).all()
    assert not np.allclose(record["vae_mean"], record["vae_mean_flipped"], atol=1e-2)


def test_moments_are_the_encoding_of_the_stored_frames(shards, reference):
  """Frames as stored (JPEG, decoded like the loader does) and their mirror images."""
  source = open_split(shards, SPLIT)
  for i in range(len(source)):
    record = source[i]
    frames = np.stack([decode_image(b) for b in record["frames"]])
    for suffix, images in (("", frames), ("_flipped", frames[:, :, ::-1])):
      mean, logvar = reference(images)
      assert mean.shape == (len(frames),) + LATENT
      np.testing.assert_allclose(record["vae_mean" + suffix].astype(np.float32), mean, rtol=RTOL, atol=ATOL)
      np.testing.assert_allclose(record["vae_logvar" + suffix].astype(np.float32), logvar, rtol=RTOL,
                                 atol=ATOL)


def test_jax_moments_match_diffusers_on_the_originals_input(shards, torch_vae):
  """Ties the stored moments to the PyTorch original's step: encode((x - 0.5) / 0.5), x in [0, 1]."""
  record = open_split(shards, SPLIT)[0]
  frames = np.stack([decode_image(record["frames"][i]) for i in (0, 7, 30)])
  x = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(255)
  with torch.no_grad():
    posterior = torch_vae[0].encode((x - 0.5) / 0.5).latent_dist
  for name, value in (("vae_mean", posterior.mean), ("vae_logvar", posterior.logvar)):
    expected = value.permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(record[name][[0, 7, 30]].astype(np.float32), expected, rtol=RTOL, atol=1e-4)


def test_train_stream_delivers_the_clips_moments(shards, reference):
  source = open_split(shards, SPLIT)
  by_key = {source[i]["key"]: source[i] for i in range(len(source))}
  it = iter(train_stream(source, seed=0, global_batch=3, process_index=0, process_count=1))
  flips = []
  for _ in range(3):
    batch = next(it)
    assert batch["vae_mean"].shape == (3, 12) + LATENT and batch["vae_mean"].dtype == np.float16
    for b in range(3):
      record, flip = by_key[batch["key"][b]], bool(batch["flip"][b])
      flips.append(flip)
      suffix = "_flipped" if flip else ""
      idx = select_frames(frame_times(record), float(batch["start"][b]))
      for name in ("vae_mean", "vae_logvar"):
        np.testing.assert_array_equal(batch[name][b], record[name + suffix][idx])
      # Aligned with the pixels the loader returns (flipped or not), frame by frame.
      mean, logvar = reference(batch["video"][b])
      np.testing.assert_allclose(batch["vae_mean"][b].astype(np.float32), mean, rtol=RTOL, atol=ATOL)
      np.testing.assert_allclose(batch["vae_logvar"][b].astype(np.float32), logvar, rtol=RTOL, atol=ATOL)
  assert any(flips) and not all(flips), flips


def test_eval_loader_delivers_unflipped_moments(shards, reference):
  batch = next(iter(eval_loader(shards, 3, split=SPLIT, process_index=0, process_count=1)))
  assert not batch["flip"].any()
  for b in range(3):
    mean, _ = reference(batch["video"][b])
    np.testing.assert_allclose(batch["vae_mean"][b].astype(np.float32), mean, rtol=RTOL, atol=ATOL)


def test_weights_are_arguments_not_constants(ckpt):
  """The compiled encoder takes the weights as inputs (a closure would bake them in as constants)."""
  moments = latents.VaeMoments(str(ckpt), batch=2)
  images = jax.ShapeDtypeStruct((2,) + fx.BUILD_SIZE + (3,), np.float32)
  lowered = moments._encode.lower(moments._state, images)
  num_weights = len(jax.tree.leaves(moments._state))
  assert len(jax.tree.leaves(lowered.args_info)) == num_weights + 1
  assert 'dense<"0x' not in lowered.as_text()  # how MLIR spells a non-uniform array literal


def test_worker_results_travel_unencoded(tmp_path_factory, ckpt):
  """With --vae-latents a worker returns the example (VAE runs once, in the main process)."""
  root = fx.synthetic_root(tmp_path_factory)
  config = fx.build_config(root, tmp_path_factory.mktemp("unused"), SPLIT, vae_latents=str(ckpt))
  listing = sources.list_videos("avsync15", str(root), SPLIT)
  result = build_lib.process_video(listing.entries[0], config, tuple(listing.class_names))
  assert "example" in result and "record" not in result
  assert pickle.loads(pickle.dumps(result))["example"]["key"] == listing.entries[0].key


@pytest.mark.parametrize("problem", ["size", "checkpoint"])
def test_bad_setup_fails_before_writing(tmp_path_factory, tmp_path, ckpt, problem):
  root = fx.synthetic_root(tmp_path_factory)
  if problem == "size":
    config = fx.build_config(root, tmp_path / "out", SPLIT, size=(44, 64), vae_latents=str(ckpt))
    match = "not a multiple of the VAE's downsampling factor 8"
  else:
    config = fx.build_config(root, tmp_path / "out", SPLIT, vae_latents=str(tmp_path / "missing"))
    match = "missing"
  with pytest.raises(ValueError, match=match):
    build_lib.build(config, progress=False)
  assert not (tmp_path / "out").exists()
