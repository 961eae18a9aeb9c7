"""Group and layer normalisation, channels-last, statistics always in float32.

Own implementations (rather than nnx.GroupNorm) so that the statistics are the
two-pass mean/variance PyTorch computes, whatever the compute dtype, and so the
parameter names (`scale`, `bias`) map one-to-one to PyTorch's `weight`, `bias`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


class GroupNorm(nnx.Module):
  """GroupNorm over channels-last input (B, ..., C).

  Statistics per sample and group span every axis between batch and channels,
  so a (B, F, H, W, C) input is normalised across frames (the resnet norm of
  AVSyncD) and a (B*F, H, W, C) input per frame (the transformer input norm).
  """

  def __init__(self, num_groups: int, num_channels: int, *, eps: float = 1e-5,
               dtype=None, param_dtype=jnp.float32):
    if num_channels % num_groups:
      raise ValueError(f"GroupNorm: {num_channels} channels do not split into {num_groups} groups")
    self.num_groups = num_groups
    self.eps = eps
    self.dtype = dtype
    self.scale = nnx.Param(jnp.ones((num_channels,), param_dtype))
    self.bias = nnx.Param(jnp.zeros((num_channels,), param_dtype))

  def __call__(self, x: jax.Array) -> jax.Array:
    dtype = self.dtype or x.dtype
    shape = x.shape
    xg = x.astype(jnp.float32).reshape(shape[:-1] + (self.num_groups, shape[-1] // self.num_groups))
    axes = tuple(range(1, xg.ndim - 2)) + (xg.ndim - 1,)
    mean = xg.mean(axis=axes, keepdims=True)
    var = jnp.square(xg - mean).mean(axis=axes, keepdims=True)
    y = ((xg - mean) * jax.lax.rsqrt(var + self.eps)).reshape(shape)
    y = y * self.scale[...].astype(jnp.float32) + self.bias[...].astype(jnp.float32)
    return y.astype(dtype)


class LayerNorm(nnx.Module):
  """LayerNorm over the last axis with affine parameters (PyTorch semantics)."""

  def __init__(self, num_features: int, *, eps: float = 1e-5, dtype=None,
               param_dtype=jnp.float32):
    self.eps = eps
    self.dtype = dtype
    self.scale = nnx.Param(jnp.ones((num_features,), param_dtype))
    self.bias = nnx.Param(jnp.zeros((num_features,), param_dtype))

  def __call__(self, x: jax.Array) -> jax.Array:
    dtype = self.dtype or x.dtype
    x32 = x.astype(jnp.float32)
    mean = x32.mean(axis=-1, keepdims=True)
    var = jnp.square(x32 - mean).mean(axis=-1, keepdims=True)
    y = (x32 - mean) * jax.lax.rsqrt(var + self.eps)
    y = y * self.scale[...].astype(jnp.float32) + self.bias[...].astype(jnp.float32)
    return y.astype(dtype)
