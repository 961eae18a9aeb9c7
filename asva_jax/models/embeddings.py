"""Sinusoidal embeddings and the two-layer MLP that follows them (docs/reference.md §2.3, §2.9)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from asva_jax.models.linear import Linear


def sinusoidal_embedding(positions: jax.Array, dim: int, *, flip_sin_to_cos: bool = True,
                         freq_shift: float = 0.0, max_period: float = 10000.0) -> jax.Array:
  """diffusers' `get_timestep_embedding`: (N,) -> (N, dim) float32.

  Frequencies exp(-ln(max_period) * k / (dim/2 - freq_shift)); cosine half first
  when `flip_sin_to_cos`. Always float32, callers cast.
  """
  half = dim // 2
  exponent = -math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / (half - freq_shift)
  angles = jnp.asarray(positions, jnp.float32)[:, None] * jnp.exp(exponent)[None, :]
  emb = jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)
  if flip_sin_to_cos:
    emb = jnp.concatenate([emb[:, half:], emb[:, :half]], axis=-1)
  if dim % 2:
    emb = jnp.pad(emb, ((0, 0), (0, 1)))
  return emb


class TimestepEmbedding(nnx.Module):
  """linear_1 -> SiLU -> linear_2 (the time embedding and `pos_embedding_temp`)."""

  def __init__(self, in_features: int, out_features: int, *, dtype=None, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    self.linear_1 = Linear(in_features, out_features, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.linear_2 = Linear(out_features, out_features, dtype=dtype, param_dtype=param_dtype, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.linear_2(jax.nn.silu(self.linear_1(x)))
