"""The DDPM forward process of AVSyncD's training (docs/reference.md §6.1): pure functions.

What the UNet predicts is diffusers' `prediction_type`: "epsilon" (the noise; AVSyncD and
SD1.5) or "v_prediction" (v = sqrt(ᾱ)·ε − sqrt(1 − ᾱ)·x0, Salimans & Ho 2022). With ε, an
error δ in the prediction becomes δ·sqrt((1 − ᾱ)/ᾱ) in x̂0: about 8δ at t = 900, so a small
model trained from scratch samples noise; v keeps x̂0's error near δ at every t.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from asva_jax.constants import PREDICTION_TYPES


def scaled_linear_alphas_cumprod(num_train_timesteps: int = 1000, beta_start: float = 0.00085,
                                 beta_end: float = 0.012) -> np.ndarray:
  """ᾱ_t for SD's "scaled_linear" betas = linspace(sqrt(β_start), sqrt(β_end), T)², float64 maths."""
  betas = np.linspace(np.sqrt(beta_start), np.sqrt(beta_end), num_train_timesteps, dtype=np.float64) ** 2
  return np.cumprod(1.0 - betas).astype(np.float32)


def _alpha(timesteps, alphas_cumprod, ndim: int) -> jax.Array:
  """ᾱ_t, shaped to broadcast against an ndim-array whose leading axes are those of `timesteps`."""
  a = jnp.asarray(alphas_cumprod)[timesteps].astype(jnp.float32)
  return a.reshape(jnp.shape(a) + (1,) * (ndim - jnp.ndim(a)))


def add_noise(x0: jax.Array, noise: jax.Array, timesteps: jax.Array, alphas_cumprod: jax.Array) -> jax.Array:
  """x_t = sqrt(ᾱ_t) x0 + sqrt(1 - ᾱ_t) ε, with one timestep per sample (leading axis)."""
  a = _alpha(timesteps, alphas_cumprod, x0.ndim)
  return (jnp.sqrt(a) * x0.astype(jnp.float32) + jnp.sqrt(1.0 - a) * noise.astype(jnp.float32)).astype(x0.dtype)



def training_target(x0: jax.Array, noise: jax.Array, timesteps: jax.Array, alphas_cumprod: jax.Array,
                    prediction_type: str = "epsilon") -> jax.Array:
  """What the UNet learns to output at x_t = add_noise(x0, noise, t): ε, or v."""
  if prediction_type == "epsilon":
    return noise
  if prediction_type == "v_prediction":
    a = _alpha(timesteps, alphas_cumprod, x0.ndim)
    return jnp.sqrt(a) * noise.astype(jnp.float32) - jnp.sqrt(1.0 - a) * x0.astype(jnp.float32)
  raise ValueError(f"prediction_type {prediction_type!r}: expected one of {PREDICTION_TYPES}")


def epsilon_from_output(output: jax.Array, sample: jax.Array, timesteps, alphas_cumprod: jax.Array,
                        prediction_type: str = "epsilon") -> jax.Array:
  """The UNet's output as ε, the quantity every sampler here steps with: v -> sqrt(1 − ᾱ)·x_t + sqrt(ᾱ)·v."""
  if prediction_type == "epsilon":
    return output
  if prediction_type == "v_prediction":
    a = _alpha(timesteps, alphas_cumprod, sample.ndim)
    return jnp.sqrt(1.0 - a) * sample + jnp.sqrt(a) * output
  raise ValueError(f"prediction_type {prediction_type!r}: expected one of {PREDICTION_TYPES}")
