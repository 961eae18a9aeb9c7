"""DDIM (diffusers' `DDIMScheduler` with SD1.5's config: "leading" spacing, steps_offset 1,
set_alpha_to_one False, no clipping). η = 0 is deterministic; η > 0 adds σ_t·z per step,
z drawn by the caller (the sampling loop derives it from its key)."""

from __future__ import annotations

import numpy as np

from asva_jax.schedulers.scheduler import (NUM_TRAIN_TIMESTEPS, Plan, SchedulerError, check_steps,
                                           default_alphas_cumprod, f32, leading_timesteps, predicted_x0,
                                           stateless_init)


def plan(num_inference_steps: int = 50, *, eta: float = 0.0, alphas_cumprod=None, steps_offset: int = 1,
         num_train_timesteps: int = NUM_TRAIN_TIMESTEPS) -> Plan:
  n = check_steps("ddim", num_inference_steps, num_train_timesteps)
  if not eta >= 0:
    raise SchedulerError(f"ddim: eta must be >= 0, got {eta}")
  ac = default_alphas_cumprod(alphas_cumprod)
  ratio = num_train_timesteps // n
  timesteps = leading_timesteps(n, steps_offset, num_train_timesteps)
  rows = []
  for t in timesteps:
    a = ac[t]
    a_prev = ac[t - ratio] if t - ratio >= 0 else ac[0]
    beta, beta_prev = f32(1) - a, f32(1) - a_prev
    variance = (beta_prev / beta) * (f32(1) - a / a_prev)
    std = f32(eta) * variance ** f32(0.5)
    rows.append((beta ** f32(0.5), a ** f32(0.5), a_prev ** f32(0.5),
                 (f32(1) - a_prev - std ** f32(2)) ** f32(0.5), std))
  rows = np.asarray(rows, np.float32)
  tables = dict(zip(("sqrt_beta", "sqrt_alpha", "sqrt_alpha_prev", "direction", "std"), rows.T))
  return Plan("ddim", timesteps.astype(np.int32), tables, stateless_init, step, stochastic=eta > 0)


def step(tab, state, i, eps, sample, noise=None):
  del i
  x0 = predicted_x0(tab, eps, sample)
  prev = tab["sqrt_alpha_prev"] * x0 + tab["direction"] * eps
  if noise is not None:
    prev = prev + tab["std"] * noise
  return prev, state
