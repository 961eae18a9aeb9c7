"""The video UNet against the original PyTorch AVSyncD UNet (fixture saved by the original code)."""

import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from convert.unet import import_unet

DATA = Path(__file__).parent / "data" / "unet_tiny_a"


@pytest.fixture(scope="module")
def io():
  return dict(np.load(DATA / "io.npz"))


@pytest.fixture(scope="module")
def unet():
  return import_unet(DATA / "unet")[0]


@functools.partial(nnx.jit, static_argnames="audio_keys")
def forward(unet, sample, timestep, text_states, audio_states, audio_mask, audio_keys=None):
  return unet(sample, timestep, text_states, audio_states, audio_mask, audio_keys=audio_keys)


def run(unet, io, **overrides):
  """The UNet on the fixture inputs (PyTorch layout in and out), `overrides` replacing some."""
  inputs = dict(sample=jnp.asarray(io["sample"]).transpose(0, 2, 3, 4, 1), timestep=io["timestep"],
                text_states=io["text"], audio_states=io["audio"], audio_mask=io["audio_mask"])
  inputs.update(overrides)
  return np.asarray(forward(unet, **inputs)).transpose(0, 4, 1, 2, 3)


def assert_close(out, expected, rtol=1e-5):
  err = np.abs(out - expected).max() / np.abs(expected).max()
  assert err < rtol, f"max error {err:.2e} relative to max |expected|"


def test_matches_original(io, unet):
  out = run(unet, io)
  assert out.shape == io["expected"].shape
  assert_close(out, io["expected"])


def test_reference_attention_matches_original(io):
  unet, _ = import_unet(DATA / "unet", attention="reference")
  assert_close(run(unet, io), io["expected"])


def test_gathered_audio_keys_match_original(io, unet):
  """Each frame attending to its own 25 of 229 audio tokens (gathered) is the masked attention."""
  from asva_jax.models.unet_3d import audio_keys_per_frame
  keys = int(io["audio_mask"].sum(-1).max())
  assert keys < io["audio_mask"].shape[-1]
  assert audio_keys_per_frame(io["audio_mask"], backend="cpu") == keys
  assert audio_keys_per_frame(io["audio_mask"], backend="gpu") is None
  # Inside a caller's jit the mask is traced: the full masked form, not a crash.
  seen = []
  jax.jit(lambda m: seen.append(audio_keys_per_frame(m, backend="cpu")) or m)(jnp.asarray(io["audio_mask"]))
  assert seen == [None]
  assert_close(run(unet, io, audio_keys=keys), io["expected"])


def test_bin_weights_load_like_safetensors(io, tmp_path):
  import shutil

  import torch
  from safetensors.torch import load_file
  shutil.copy(DATA / "unet" / "config.json", tmp_path / "config.json")
  torch.save(load_file(DATA / "unet" / "diffusion_pytorch_model.safetensors"),
             tmp_path / "diffusion_pytorch_model.bin")
  unet, _ = import_unet(tmp_path)
  assert_close(run(unet, io), io["expected"])


def test_shared_context_equals_repeated_context(io, unet):
  """(B, N, D) text/audio and an (F, T) mask mean the same thing repeated over frames."""
  f = io["sample"].shape[2]
  text, audio, mask = io["text"][:, 0], io["audio"][:, 0], io["audio_mask"][0]
  shared = run(unet, io, text_states=text, audio_states=audio, audio_mask=mask)
  repeated = run(unet, io, text_states=np.repeat(text[:, None], f, 1),
                 audio_states=np.repeat(audio[:, None], f, 1),
                 audio_mask=np.broadcast_to(mask, io["audio_mask"].shape))
  assert_close(shared, repeated)
  assert not np.allclose(shared, io["expected"], atol=1e-3)  # the inputs did change


def test_scalar_timestep_broadcasts(io, unet):
  t = int(io["timestep"][0])
  scalar = run(unet, io, timestep=t)
  vector = run(unet, io, timestep=np.full_like(io["timestep"], t))
  np.testing.assert_array_equal(scalar, vector)


def test_missing_audio_is_an_error(io, unet):
  with pytest.raises(ValueError, match="audio_states is required"):
    unet(jnp.asarray(io["sample"]).transpose(0, 2, 3, 4, 1), io["timestep"], io["text"])


def test_audio_mask_matters(io, unet):
  """Letting every frame see every audio token changes the output: the mask is applied."""
  out = run(unet, io, audio_mask=np.ones_like(io["audio_mask"]))
  assert np.abs(out - io["expected"]).max() > 1e-3


def test_bfloat16_and_remat(io):
  unet32, _ = import_unet(DATA / "unet")
  unet16, _ = import_unet(DATA / "unet", dtype=jnp.bfloat16, param_dtype=jnp.bfloat16, remat=True)
  assert all(v.get_value().dtype == jnp.bfloat16
             for _, v in nnx.to_flat_state(nnx.state(unet16, nnx.Param)))
  out16 = run(unet16, io).astype(np.float32)
  assert np.isfinite(out16).all()
  err = np.abs(out16 - io["expected"]).max() / np.abs(io["expected"]).max()
  assert err < 0.05, err  # measured 0.024: bf16 keeps 8 mantissa bits; a broken path gives O(1)


def test_remat_gradients_equal():
  """Rematerialisation changes memory, not maths (a two-level UNet keeps the compile short)."""
  from asva_jax.models.unet_3d import build_unet, trainable
  config = dict(block_out_channels=[8, 8], layers_per_block=1, norm_num_groups=2, attention_head_dim=2,
                cross_attention_dim=6, audio_cross_attention_dim=5,
                down_block_types=["FFSpatioAudioTempCrossAttnDownBlock3D", "FFSpatioTempResDownBlock3D"],
                up_block_types=["FFSpatioTempResUpBlock3D", "FFSpatioAudioTempCrossAttnUpBlock3D"])
  rng = np.random.default_rng(0)
  x = rng.standard_normal((1, 3, 4, 4, 4), np.float32)
  text = rng.standard_normal((1, 3, 6), np.float32)
  audio = rng.standard_normal((1, 7, 5), np.float32)
  mask = rng.random((3, 7)) < 0.5

  def loss(m):
    return jnp.mean(m(x, 10, text, audio, mask) ** 2)

  grad = nnx.jit(lambda m: nnx.grad(loss, argnums=nnx.DiffState(0, trainable))(m))
  grads = [jax.tree.leaves(grad(build_unet(config, seed=1, remat=remat))) for remat in (False, True)]
  assert len(grads[0]) > 0 and any(float(jnp.abs(g).max()) > 0 for g in grads[0])
  for a, b in zip(*grads):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-8)


def test_transformer_input_norm_on_quiet_activations(unet):
  """The transformer's per-frame input GroupNorm is PyTorch's GroupNorm with eps 1e-6: on
  activations of variance ~1e-6 (where eps 1e-5 would shrink the output ~3x) it still matches."""
  import torch
  transformer = unet.down_blocks[0].attentions[0]
  norm = transformer.norm
  rng = np.random.default_rng(3)
  channels = norm.scale.get_value().shape[0]
  x = (1e-3 * rng.standard_normal((4, 5, 5, channels)) + 0.01).astype(np.float32)  # (B*F, H, W, C)
  param = lambda v: torch.from_numpy(np.asarray(v.get_value(), np.float64))
  expected = torch.nn.functional.group_norm(  # in float64: the reference's own round-off out of the way
      torch.from_numpy(x.astype(np.float64)).permute(0, 3, 1, 2), norm.num_groups, param(norm.scale),
      param(norm.bias), eps=1e-6).permute(0, 2, 3, 1).numpy()
  out = np.asarray(norm(jnp.asarray(x)))
  assert_close(out, expected)
