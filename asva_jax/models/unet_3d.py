"""AVSyncD's audio-conditioned video UNet (`AudioUNet3DConditionModel`, docs/reference.md §2) in Flax NNX.

Channels-last: `sample` is (B, F, H, W, C). Attribute paths equal the PyTorch
state-dict keys (with `kernel`/`scale` for `weight`), so `trainable` selects the
`_temp`/`_audio` parameters exactly as the original's name filter does.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from asva_jax import component_folders
from asva_jax.models.embeddings import TimestepEmbedding, sinusoidal_embedding
from asva_jax.models.ff_conv import FFInflatedConv
from asva_jax.models.normalization import GroupNorm
from asva_jax.models.unet_3d_blocks import DownBlock3D, MidBlock3D, UpBlock3D
from asva_jax.models.unet_config import (CROSS_ATTN_DOWN, CROSS_ATTN_UP, UNet3DConfig, has_audio)


def trainable(path: tuple, value=None) -> bool:
  """NNX filter for the parameters AVSyncD trains: module names containing `_temp` or `_audio`."""
  del value
  return any("_temp" in str(p) or "_audio" in str(p) for p in path)


class AudioUNet3D(nnx.Module):
  """ε-prediction video UNet with first-frame, audio, text and temporal attention.

  Options: `dtype` (compute) and `param_dtype`; `remat` rematerialises every
  resnet and transformer in the backward pass (the original's gradient
  checkpointing); `attention` is "auto" (`jax.nn.dot_product_attention`, cuDNN
  flash on GPU when possible), "xla", "cudnn" or "reference" (exact float32 einsum).
  """

  def __init__(self, config: UNet3DConfig, *, dtype=jnp.float32, param_dtype=jnp.float32,
               remat: bool = False, attention: str = "auto", rngs: nnx.Rngs):
    self.config = config
    self.dtype = dtype
    ch = config.block_out_channels
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    temb = config.time_embed_dim
    common = dict(temb_channels=temb, groups=config.norm_num_groups, eps=config.norm_eps,
                  cross_attention_dim=config.cross_attention_dim, implementation=attention, **kw)

    def audio_dim(block_type):
      return config.audio_cross_attention_dim if has_audio(block_type) else None

    self.conv_in = FFInflatedConv(config.in_channels, ch[0], 3, padding=1, **kw)
    self.time_embedding = TimestepEmbedding(ch[0], temb, **kw)

    down, out_c = [], ch[0]
    for i, block_type in enumerate(config.down_block_types):
      in_c, out_c = out_c, ch[i]
      down.append(DownBlock3D(
          in_c, out_c, num_layers=config.layers_per_block, with_attention=block_type in CROSS_ATTN_DOWN,
          add_downsample=i < len(ch) - 1, heads=config.heads[i], remat=remat,
          audio_cross_attention_dim=audio_dim(block_type), **common))
    self.down_blocks = nnx.List(down)

    self.mid_block = MidBlock3D(ch[-1], heads=config.heads[-1], remat=remat,
                                audio_cross_attention_dim=audio_dim(config.mid_block_type), **common)

    up, rev, rev_heads = [], ch[::-1], config.heads[::-1]
    out_c = rev[0]
    for i, block_type in enumerate(config.up_block_types):
      prev_c, out_c = out_c, rev[i]
      in_c = rev[min(i + 1, len(ch) - 1)]
      up.append(UpBlock3D(
          in_c, prev_c, out_c, num_layers=config.layers_per_block + 1,
          with_attention=block_type in CROSS_ATTN_UP, add_upsample=i < len(ch) - 1,
          heads=rev_heads[i], remat=remat, audio_cross_attention_dim=audio_dim(block_type), **common))
    self.up_blocks = nnx.List(up)

    self.conv_norm_out = GroupNorm(config.norm_num_groups, ch[0], eps=config.norm_eps, dtype=dtype,
                                   param_dtype=param_dtype)
    self.conv_out = FFInflatedConv(ch[0], config.out_channels, 3, padding=1, **kw)

  def __call__(self, sample: jax.Array, timestep: jax.Array, text_states: jax.Array,
               audio_states: jax.Array | None = None, audio_mask: jax.Array | None = None,
               audio_keys: int | None = None) -> jax.Array:
    """Noise prediction shaped like `sample`.

    sample (B, F, H, W, C); timestep scalar or (B,); text_states (B, F, N, D) or
    (B, N, D); audio_states (B, F, T, D) or (B, T, D); audio_mask (B, F, T) or
    (F, T), boolean, True = may attend. A per-video (3-D) text/audio context is
    projected once and shared by all frames, which equals repeating it per frame.

    audio_keys (static): when every frame may attend at most this many (and at least one) audio
    tokens, each frame's audio cross-attention runs over its own tokens only, gathered before the
    projections: the same softmax without the masked-out scores (AVSyncD's windows: 25 of 229).
    `audio_keys_per_frame` gives the value for a mask, or None where the full masked form is faster.
    """
    b, f = sample.shape[:2]
    dtype = self.dtype
    timestep = jnp.broadcast_to(jnp.asarray(timestep), (b,))
    t_emb = sinusoidal_embedding(timestep, self.config.block_out_channels[0],
                                 flip_sin_to_cos=self.config.flip_sin_to_cos,
                                 freq_shift=self.config.freq_shift)
    emb = self.time_embedding(t_emb.astype(dtype))

    text = _per_frame(text_states, "text_states").astype(dtype)
    audio = mask = None
    if audio_states is None and self.config.uses_audio:
      raise ValueError("audio_states is required: this UNet has audio cross-attention blocks")
    if audio_states is not None:
      audio = _per_frame(audio_states, "audio_states").astype(dtype)
      if audio_mask is None:
        mask = jnp.ones((b, f, audio.shape[2]), bool)
      else:
        mask = jnp.broadcast_to(jnp.asarray(audio_mask, bool), (b, f, audio.shape[2]))
      if audio_keys is not None and audio_keys < audio.shape[2]:
        audio, mask = gather_audio_keys(audio, mask, audio_keys)

    x = self.conv_in(sample.astype(dtype))
    skips = [x]
    for block in self.down_blocks:
      x, res = block(x, emb, text, audio, mask)
      skips.extend(res)
    x = self.mid_block(x, emb, text, audio, mask)
    for block in self.up_blocks:
      x, skips = block(x, skips, emb, text, audio, mask)
    x = jax.nn.silu(self.conv_norm_out(x))
    return self.conv_out(x)


def gather_audio_keys(audio: jax.Array, mask: jax.Array, keys: int) -> tuple[jax.Array, jax.Array]:
  """Each frame's first `keys` visible tokens (in token order, then masked ones as padding):
  audio (B, F|1, T, D), mask (B, F, T) -> (B, F, keys, D), (B, F, keys)."""
  index = jnp.argsort(~mask, axis=-1, stable=True)[..., :keys]
  audio = jnp.broadcast_to(audio, mask.shape + audio.shape[-1:])
  return (jnp.take_along_axis(audio, index[..., None], axis=2),
          jnp.take_along_axis(mask, index, axis=-1))


def audio_keys_per_frame(audio_mask, backend: str | None = None) -> int | None:
  """`audio_keys` for a concrete mask (B, F, T) or (F, T), or None where the gathered form is not
  the chosen structure: CPU only for now (docs/cpu_speed.md; GPU/TPU not measured yet). A traced
  mask (denoise called inside the caller's own jit) has no values to count: the full masked form,
  which gives the same result, is used."""
  if (audio_mask is None or isinstance(audio_mask, jax.core.Tracer)
      or (backend or jax.default_backend()) != "cpu"):
    return None
  counts = np.asarray(audio_mask, bool).sum(axis=-1)
  return int(counts.max()) if counts.min() > 0 else None


def _per_frame(states: jax.Array, name: str) -> jax.Array:
  states = jnp.asarray(states)
  if states.ndim == 3:
    return states[:, None]
  if states.ndim == 4:
    return states
  raise ValueError(f"{name} must be (B, F, N, D) or (B, N, D), got shape {states.shape}")


def build_unet(config: UNet3DConfig | dict, *, abstract: bool = False, seed: int = 0,
               **options) -> AudioUNet3D:
  """The UNet with fresh weights, or with shapes only (`abstract`, no memory used)."""
  if isinstance(config, dict):
    config = UNet3DConfig.from_dict(config)
  make = lambda: AudioUNet3D(config, rngs=nnx.Rngs(seed), **options)
  return nnx.eval_shape(make) if abstract else make()


def load_unet(path: str | os.PathLike, **options) -> AudioUNet3D:
  """The UNet of a converted checkpoint (its root or its `unet/` folder).

  options: dtype, param_dtype, remat, attention (see AudioUNet3D).
  """
  return component_folders.load_component(path, "unet", lambda config, source: AudioUNet3D(
      UNet3DConfig.from_dict(config, source=source), rngs=nnx.Rngs(0), **options))
