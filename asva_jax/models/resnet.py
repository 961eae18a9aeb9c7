"""Resnet block and resamplers of the video UNet (docs/reference.md §2.6, §2.7)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from asva_jax.models.ff_conv import FFInflatedConv
from asva_jax.models.linear import Linear
from asva_jax.models.normalization import GroupNorm


class ResnetBlock3D(nnx.Module):
  """GN -> SiLU -> conv1 -> + time -> GN -> SiLU -> conv2, plus a (1x1 FF conv) shortcut.

  Both GroupNorms take statistics over all frames of a video (5-D GroupNorm of the original).
  """

  def __init__(self, in_channels: int, out_channels: int, *, temb_channels: int, groups: int,
               eps: float, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    nkw = dict(eps=eps, dtype=dtype, param_dtype=param_dtype)
    self.norm1 = GroupNorm(groups, in_channels, **nkw)
    self.conv1 = FFInflatedConv(in_channels, out_channels, 3, padding=1, **kw)
    self.time_emb_proj = Linear(temb_channels, out_channels, **kw)
    self.norm2 = GroupNorm(groups, out_channels, **nkw)
    self.conv2 = FFInflatedConv(out_channels, out_channels, 3, padding=1, **kw)
    self.conv_shortcut = (FFInflatedConv(in_channels, out_channels, 1, **kw)
                          if in_channels != out_channels else None)

  def __call__(self, x: jax.Array, temb: jax.Array) -> jax.Array:
    """x (B, F, H, W, C_in); temb (B, T) -> (B, F, H, W, C_out)."""
    h = self.conv1(jax.nn.silu(self.norm1(x)))
    h = h + self.time_emb_proj(jax.nn.silu(temb))[:, None, None, None, :]
    h = self.conv2(jax.nn.silu(self.norm2(h)))
    shortcut = x if self.conv_shortcut is None else self.conv_shortcut(x)
    return shortcut + h


class Downsample3D(nnx.Module):
  """FF conv 3x3, stride 2, symmetric padding 1 (not "SAME")."""

  def __init__(self, channels: int, *, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    self.conv = FFInflatedConv(channels, channels, 3, stride=2, padding=1, dtype=dtype,
                               param_dtype=param_dtype, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.conv(x)


class Upsample3D(nnx.Module):
  """Nearest x2 in H and W (frames untouched), then FF conv 3x3."""

  def __init__(self, channels: int, *, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    self.conv = FFInflatedConv(channels, channels, 3, padding=1, dtype=dtype,
                               param_dtype=param_dtype, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    x = jnp.repeat(jnp.repeat(x, 2, axis=2), 2, axis=3)
    return self.conv(x)
