"""GEGLU feed-forward of the transformer blocks (diffusers `FeedForward`, key `ff.net.{0,2}`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from asva_jax.models.linear import Linear


class Identity(nnx.Module):
  """Parameter-free placeholder keeping list indices aligned with PyTorch (e.g. a Dropout slot)."""

  def __call__(self, x):
    return x


class GEGLU(nnx.Module):
  def __init__(self, dim: int, inner_dim: int, *, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    self.proj = Linear(dim, 2 * inner_dim, dtype=dtype, param_dtype=param_dtype, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    value, gate = jnp.split(self.proj(x), 2, axis=-1)
    return value * jax.nn.gelu(gate, approximate=False)


class FeedForward(nnx.Module):
  """net.0 = GEGLU(C -> mult*C), net.1 = dropout (rate 0), net.2 = Linear(mult*C -> C)."""

  def __init__(self, dim: int, *, mult: int = 4, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    inner = dim * mult
    self.net = nnx.List([
        GEGLU(dim, inner, dtype=dtype, param_dtype=param_dtype, rngs=rngs),
        Identity(),
        Linear(inner, dim, dtype=dtype, param_dtype=param_dtype, rngs=rngs),
    ])

  def __call__(self, x: jax.Array) -> jax.Array:
    for layer in self.net:
      x = layer(x)
    return x
