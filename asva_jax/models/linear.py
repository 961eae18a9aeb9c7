"""Linear and 2-D convolution layers initialised as PyTorch initialises them.

PyTorch's default init (kaiming-uniform with a=sqrt(5)) draws weight and bias
from U(-1/sqrt(fan_in), 1/sqrt(fan_in)); the original model relies on it for
every new AVSyncD parameter that is not zero-initialised (docs/reference.md §2.10), so we
reproduce the distribution (not the values) when building from SD1.5.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx


def torch_uniform(fan_in: int):
  bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def zeros_init(key, shape, dtype=jnp.float32):
  del key
  return jnp.zeros(shape, dtype)


def Linear(in_features: int, out_features: int, *, use_bias: bool = True, zero_kernel: bool = False,
           zero_bias: bool = False, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs) -> nnx.Linear:
  """`nnx.Linear` (kernel (in, out)) with PyTorch's default init, or zeros where asked."""
  return nnx.Linear(
      in_features, out_features, use_bias=use_bias, dtype=dtype, param_dtype=param_dtype,
      kernel_init=zeros_init if zero_kernel else torch_uniform(in_features),
      bias_init=zeros_init if zero_bias else torch_uniform(in_features), rngs=rngs)


class Conv2d(nnx.Module):
  """2-D convolution on channels-last input, explicit symmetric padding as in PyTorch."""

  def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1,
               padding: int = 0, use_bias: bool = True, dtype=None, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    fan_in = in_channels * kernel_size * kernel_size
    init = torch_uniform(fan_in)
    self.kernel = nnx.Param(init(rngs.params(), (kernel_size, kernel_size, in_channels, out_channels),
                                 param_dtype))
    self.bias = nnx.Param(init(rngs.params(), (out_channels,), param_dtype)) if use_bias else None
    self.stride = stride
    self.padding = padding
    self.dtype = dtype

  def __call__(self, x: jax.Array) -> jax.Array:
    """x: (N, H, W, C_in) -> (N, H', W', C_out)."""
    dtype = self.dtype or x.dtype
    kernel = self.kernel[...].astype(dtype)
    if kernel.shape[:2] == (1, 1) and self.stride == 1 and self.padding == 0:
      y = jnp.einsum("...c,cd->...d", x.astype(dtype), kernel[0, 0])
    else:
      p = self.padding
      y = jax.lax.conv_general_dilated(
          x.astype(dtype), kernel, window_strides=(self.stride, self.stride),
          padding=((p, p), (p, p)), dimension_numbers=("NHWC", "HWIO", "NHWC"))
    if self.bias is not None:
      y = y + self.bias[...].astype(dtype)
    return y
