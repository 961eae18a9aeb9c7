"""Ancestral DDPM sampling (diffusers' `DDPMScheduler` with the training config of docs/reference.md §6.1:
"fixed_small" variance, no clipping, "leading" spacing with steps_offset 1). Slow: it is the
reference sampler of the training objective, not a fast one."""

from __future__ import annotations

import numpy as np

from asva_jax.schedulers.scheduler import (NUM_TRAIN_TIMESTEPS, Plan, SchedulerError, check_steps,
                                           default_alphas_cumprod, f32, leading_timesteps, predicted_x0,
                                           stateless_init)


def plan(num_inference_steps: int = 50, *, alphas_cumprod=None, steps_offset: int = 1,
         num_train_timesteps: int = NUM_TRAIN_TIMESTEPS) -> Plan:
  n = check_steps("ddpm", num_inference_steps, num_train_timesteps)
  timesteps = leading_timesteps(n, steps_offset, num_train_timesteps)
  if timesteps[0] >= num_train_timesteps:
    raise SchedulerError(f"ddpm: {n} steps with steps_offset {steps_offset} reach timestep "
                         f"{timesteps[0]} >= {num_train_timesteps}; use fewer steps")
  ac = default_alphas_cumprod(alphas_cumprod)
  rows = []
  for i, t in enumerate(timesteps):
    prev_t = timesteps[i + 1] if i + 1 < n else -1
    a = ac[t]
    a_prev = ac[prev_t] if prev_t >= 0 else f32(1)
    beta, beta_prev = f32(1) - a, f32(1) - a_prev
    cur_alpha = a / a_prev
    cur_beta = f32(1) - cur_alpha
    variance = max(beta_prev / beta * cur_beta, f32(1e-20))
    rows.append((beta ** f32(0.5), a ** f32(0.5), (a_prev ** f32(0.5) * cur_beta) / beta,
                 cur_alpha ** f32(0.5) * beta_prev / beta, variance ** f32(0.5) if t > 0 else f32(0)))
  rows = np.asarray(rows, np.float32)
  tables = dict(zip(("sqrt_beta", "sqrt_alpha", "x0_coeff", "sample_coeff", "std"), rows.T))
  return Plan("ddpm", timesteps.astype(np.int32), tables, stateless_init, step, stochastic=True)


def step(tab, state, i, eps, sample, noise=None):
  del i
  x0 = predicted_x0(tab, eps, sample)
  prev = tab["x0_coeff"] * x0 + tab["sample_coeff"] * sample
  if noise is not None:
    prev = prev + tab["std"] * noise
  return prev, state
