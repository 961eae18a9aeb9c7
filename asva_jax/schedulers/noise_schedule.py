"""The DDPM forward process of AVSyncD's training (docs/reference.md §6.1): pure functions."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def scaled_linear_alphas_cumprod(num_train_timesteps: int = 1000, beta_start: float = 0.00085,
                                 beta_end: float = 0.012) -> np.ndarray:
  """ᾱ_t for SD's "scaled_linear" betas = linspace(sqrt(β_start), sqrt(β_end), T)², float64 maths."""
  betas = np.linspace(np.sqrt(beta_start), np.sqrt(beta_end), num_train_timesteps, dtype=np.float64) ** 2
  return np.cumprod(1.0 - betas).astype(np.float32)


def add_noise(x0: jax.Array, noise: jax.Array, timesteps: jax.Array, alphas_cumprod: jax.Array) -> jax.Array:
  """x_t = sqrt(ᾱ_t) x0 + sqrt(1 - ᾱ_t) ε, with one timestep per sample (leading axis)."""
  a = jnp.asarray(alphas_cumprod)[timesteps].astype(jnp.float32)
  a = a.reshape((-1,) + (1,) * (x0.ndim - 1))
  return (jnp.sqrt(a) * x0.astype(jnp.float32) + jnp.sqrt(1.0 - a) * noise.astype(jnp.float32)).astype(x0.dtype)
