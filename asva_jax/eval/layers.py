"""Layers shared by the evaluation networks: float32 convolutions and inference BatchNorm.

Attribute names are PyTorch's (`weight`, `bias`, `running_mean`, `running_var`;
a convolution's `kernel` is PyTorch's `weight` in channels-last layout), so
`asva_jax.torch_weights` maps a state dict onto a module by name alone (`load_network`).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from asva_jax.eval.errors import EvalModelError
from asva_jax.torch_weights import batch_norm_counters, load_into

# Detector features feed Fréchet distances and similarities compared to the original
# to ~1e-5: no reduced-precision (TF32/bf16 pass) convolutions or matmuls.
PRECISION = jax.lax.Precision.HIGHEST


class Conv(nnx.Module):
  """A PyTorch-style N-d convolution over channels-last input (B, *spatial, C).

  `padding` is symmetric zero padding per spatial axis, as PyTorch's `padding=`.
  Parameters start at zero: these networks are only ever used with loaded weights,
  and zeros make building one (even abstractly, at full size) cheap.
  """

  def __init__(self, in_channels: int, out_channels: int, kernel: Sequence[int],
               stride: Sequence[int] | int = 1, padding: Sequence[int] | int = 0, use_bias: bool = False):
    kernel = tuple(kernel)
    n = len(kernel)
    self.stride = (stride,) * n if isinstance(stride, int) else tuple(stride)
    padding = (padding,) * n if isinstance(padding, int) else tuple(padding)
    self.padding = tuple((p, p) for p in padding)
    self.kernel = nnx.Param(jnp.zeros(kernel + (in_channels, out_channels), jnp.float32))
    self.bias = nnx.Param(jnp.zeros((out_channels,), jnp.float32)) if use_bias else None

  def __call__(self, x: jax.Array) -> jax.Array:
    if len(self.stride) == 3 and jax.default_backend() == "cpu":
      y = self._conv3d_by_frames(x)
    else:
      y = _conv(x, self.kernel[...], self.stride, self.padding)
    return y if self.bias is None else y + self.bias[...]

  def _conv3d_by_frames(self, x: jax.Array) -> jax.Array:
    """A 3-D convolution as a sum over its temporal taps of 2-D convolutions of whole frames.

    XLA:CPU runs 3-D convolutions several times slower than this (7x for I3D's stem).
    """
    kernel = self.kernel[...]
    (t_lo, t_hi), spatial_pads = self.padding[0], self.padding[1:]
    st = self.stride[0]
    x = jnp.pad(x, ((0, 0), (t_lo, t_hi), (0, 0), (0, 0), (0, 0)))
    frames = (x.shape[1] - kernel.shape[0]) // st + 1
    out = None
    for tap in range(kernel.shape[0]):
      window = x[:, tap:tap + st * (frames - 1) + 1:st]
      y = _conv(window.reshape((-1,) + window.shape[2:]), kernel[tap], self.stride[1:], spatial_pads)
      out = y if out is None else out + y
    return out.reshape((x.shape[0], frames) + out.shape[1:])


def _conv(x: jax.Array, kernel: jax.Array, stride, padding) -> jax.Array:
  n = len(stride)
  spatial = tuple(range(1, n + 1))
  numbers = jax.lax.ConvDimensionNumbers(lhs_spec=(0, n + 1) + spatial, rhs_spec=(n + 1, n) + tuple(range(n)),
                                         out_spec=(0, n + 1) + spatial)
  return jax.lax.conv_general_dilated(x, kernel, stride, padding, dimension_numbers=numbers,
                                      precision=PRECISION)


class Linear(nnx.Module):
  """PyTorch's Linear on the last axis; `kernel` is its `weight` transposed. Starts at zero."""

  def __init__(self, in_features: int, out_features: int, use_bias: bool = True):
    self.kernel = nnx.Param(jnp.zeros((in_features, out_features), jnp.float32))
    self.bias = nnx.Param(jnp.zeros((out_features,), jnp.float32)) if use_bias else None

  def __call__(self, x: jax.Array) -> jax.Array:
    y = jnp.matmul(x, self.kernel[...], precision=PRECISION)
    return y if self.bias is None else y + self.bias[...]


class BatchNorm(nnx.Module):
  """BatchNorm with running statistics (evaluation mode only), over the last axis."""

  def __init__(self, num_features: int, eps: float = 1e-5):
    self.eps = eps
    self.weight = nnx.Param(jnp.ones((num_features,), jnp.float32))
    self.bias = nnx.Param(jnp.zeros((num_features,), jnp.float32))
    self.running_mean = nnx.BatchStat(jnp.zeros((num_features,), jnp.float32))
    self.running_var = nnx.BatchStat(jnp.ones((num_features,), jnp.float32))

  def __call__(self, x: jax.Array) -> jax.Array:
    # PyTorch's inference form: x * alpha + beta.
    alpha = self.weight[...] * jax.lax.rsqrt(self.running_var[...] + self.eps)
    return x * alpha + (self.bias[...] - self.running_mean[...] * alpha)


def max_pool(x: jax.Array, window: Sequence[int], stride: Sequence[int],
             padding: Sequence[int] | int = 0) -> jax.Array:
  """PyTorch MaxPool (floor mode) over the spatial axes of (B, *spatial, C); padding never wins."""
  n = len(window)
  padding = (padding,) * n if isinstance(padding, int) else tuple(padding)
  pads = ((0, 0),) + tuple((p, p) for p in padding) + ((0, 0),)
  return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, *window, 1), (1, *stride, 1), pads)


def avg_pool(x: jax.Array, window: Sequence[int], stride: Sequence[int], padding: Sequence[int] | int = 0,
             count_include_pad: bool = True) -> jax.Array:
  """PyTorch AvgPool over the spatial axes of (B, *spatial, C)."""
  n = len(window)
  padding = (padding,) * n if isinstance(padding, int) else tuple(padding)
  pads = ((0, 0),) + tuple((p, p) for p in padding) + ((0, 0),)
  dims, strides = (1, *window, 1), (1, *stride, 1)
  total = jax.lax.reduce_window(x, 0.0, jax.lax.add, dims, strides, pads)
  if count_include_pad or not any(padding):
    count = 1
    for w in window:
      count *= w
    return total / count
  ones = jnp.ones((1, *x.shape[1:-1], 1), x.dtype)
  return total / jax.lax.reduce_window(ones, 0.0, jax.lax.add, dims, strides, pads)


def load_network(module: nnx.Module, state_dict, source: str) -> nnx.Module:
  """Copies a detector's state dict into `module` (which may be abstract): every variable,
  BatchNorm statistics included, in float32; BatchNorm's step counters are not needed."""
  return load_into(module, state_dict, source, kind=nnx.Variable, ignore=batch_norm_counters,
                   error=EvalModelError, noun="network")
