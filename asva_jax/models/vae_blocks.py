"""Building blocks of the SD1.5 VAE (diffusers `AutoencoderKL`), channels-last.

Attribute names are diffusers' so that an NNX variable path is the PyTorch
state-dict key (see `asva_jax/torch_weights.py`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from asva_jax.models.normalization import GroupNorm


def conv2d(in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1,
           padding=None, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs) -> nnx.Conv:
  """PyTorch-style Conv2d: explicit padding (default `kernel_size // 2` on every side)."""
  if padding is None:
    p = kernel_size // 2
    padding = ((p, p), (p, p))
  return nnx.Conv(in_channels, out_channels, (kernel_size, kernel_size), strides=(stride, stride),
                  padding=padding, dtype=dtype, param_dtype=param_dtype, rngs=rngs)


class ResnetBlock2D(nnx.Module):
  """norm1 -> SiLU -> conv1 -> norm2 -> SiLU -> conv2, plus a (1x1-projected) shortcut.

  The VAE's resnets have no time embedding and an output scale factor of 1.
  """

  def __init__(self, in_channels: int, out_channels: int, *, groups: int, eps: float = 1e-6,
               dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype)
    self.norm1 = GroupNorm(groups, in_channels, eps=eps, **kw)
    self.conv1 = conv2d(in_channels, out_channels, 3, rngs=rngs, **kw)
    self.norm2 = GroupNorm(groups, out_channels, eps=eps, **kw)
    self.conv2 = conv2d(out_channels, out_channels, 3, rngs=rngs, **kw)
    self.conv_shortcut = (conv2d(in_channels, out_channels, 1, rngs=rngs, **kw)
                          if in_channels != out_channels else None)

  def __call__(self, x: jax.Array) -> jax.Array:
    h = self.conv1(nnx.silu(self.norm1(x)))
    h = self.conv2(nnx.silu(self.norm2(h)))
    if self.conv_shortcut is not None:
      x = self.conv_shortcut(x)
    return x + h


class Downsample2D(nnx.Module):
  """Stride-2 3x3 conv after zero-padding right and bottom by one (diffusers' `padding=0` case)."""

  def __init__(self, channels: int, *, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    self.conv = conv2d(channels, channels, 3, stride=2, padding=((0, 1), (0, 1)), dtype=dtype,
                       param_dtype=param_dtype, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.conv(x)


class Upsample2D(nnx.Module):
  """Nearest-neighbour 2x upsampling, then a 3x3 conv."""

  def __init__(self, channels: int, *, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    self.conv = conv2d(channels, channels, 3, dtype=dtype, param_dtype=param_dtype, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
    return self.conv(x)


class Attention(nnx.Module):
  """Single-head spatial self-attention over all H*W positions, with group norm and residual.

  diffusers builds it with `heads = channels // attention_head_dim` where the VAE
  passes `attention_head_dim = channels`, hence one head of width C.
  """

  def __init__(self, channels: int, *, groups: int, eps: float = 1e-6, dtype=None,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype)
    self.group_norm = GroupNorm(groups, channels, eps=eps, **kw)
    self.to_q = nnx.Linear(channels, channels, rngs=rngs, **kw)
    self.to_k = nnx.Linear(channels, channels, rngs=rngs, **kw)
    self.to_v = nnx.Linear(channels, channels, rngs=rngs, **kw)
    self.to_out = nnx.List([nnx.Linear(channels, channels, rngs=rngs, **kw), nnx.Dropout(0.0)])

  def __call__(self, x: jax.Array) -> jax.Array:
    b, h, w, c = x.shape
    t = self.group_norm(x).reshape(b, h * w, 1, c)
    q, k, v = self.to_q(t), self.to_k(t), self.to_v(t)
    out = jax.nn.dot_product_attention(q, k, v).reshape(b, h * w, c)
    out = self.to_out[0](out).reshape(b, h, w, c)
    return out + x


class UNetMidBlock2D(nnx.Module):
  """resnet, then (attention, resnet) once: the VAE's mid block."""

  def __init__(self, channels: int, *, groups: int, add_attention: bool = True, eps: float = 1e-6,
               dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(groups=groups, eps=eps, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.attentions = nnx.List([Attention(channels, **kw)]) if add_attention else None
    self.resnets = nnx.List([ResnetBlock2D(channels, channels, **kw) for _ in range(2)])

  def __call__(self, x: jax.Array) -> jax.Array:
    x = self.resnets[0](x)
    if self.attentions is not None:
      x = self.attentions[0](x)
    return self.resnets[1](x)


class DownEncoderBlock2D(nnx.Module):
  def __init__(self, in_channels: int, out_channels: int, *, num_layers: int, groups: int,
               add_downsample: bool, eps: float = 1e-6, dtype=None, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.resnets = nnx.List([
        ResnetBlock2D(in_channels if i == 0 else out_channels, out_channels, groups=groups, eps=eps, **kw)
        for i in range(num_layers)])
    self.downsamplers = nnx.List([Downsample2D(out_channels, **kw)]) if add_downsample else None

  def __call__(self, x: jax.Array) -> jax.Array:
    for resnet in self.resnets:
      x = resnet(x)
    if self.downsamplers is not None:
      x = self.downsamplers[0](x)
    return x


class UpDecoderBlock2D(nnx.Module):
  def __init__(self, in_channels: int, out_channels: int, *, num_layers: int, groups: int,
               add_upsample: bool, eps: float = 1e-6, dtype=None, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.resnets = nnx.List([
        ResnetBlock2D(in_channels if i == 0 else out_channels, out_channels, groups=groups, eps=eps, **kw)
        for i in range(num_layers)])
    self.upsamplers = nnx.List([Upsample2D(out_channels, **kw)]) if add_upsample else None

  def __call__(self, x: jax.Array) -> jax.Array:
    for resnet in self.resnets:
      x = resnet(x)
    if self.upsamplers is not None:
      x = self.upsamplers[0](x)
    return x
