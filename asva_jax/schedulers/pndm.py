"""PNDM with `skip_prk_steps` (PLMS), as AVSyncD samples (docs/reference.md §7.1, §7.2; pitfall §10.14).

n steps = n + 1 UNet calls: the second-to-last "leading" timestep is repeated
(50 steps: 981, 961, 961, 941, ..., 21, 1). Warm-up: call 0 stores ε and steps
provisionally; call 1 (not stored) averages (ε₁ + ε₀)/2 and redoes the first
transfer; calls 2 and 3 use 2nd/3rd-order Adams-Bashforth; later calls the
4th-order one over the last four stored ε. ᾱ of a negative timestep is ᾱ₀
(`set_alpha_to_one` False).

Two variants differ only in which latents call 1 restarts from:
  "pndm"  the original pipeline: it hands diffusers a view of the latents and
          writes each step into that view, so the sample PLMS remembered at call
          0 is overwritten by the provisional one; call 1 restarts from the
          provisional latents. This reproduces the released videos.
  "plms"  diffusers' textbook PLMS: call 1 restarts from the remembered latents.

With `prediction_type="v_prediction"` the steps combine the raw model outputs (v) and turn
the combination into ε once, with ᾱ of the step's start and the sample being stepped, as
diffusers' `PNDMScheduler(prediction_type="v_prediction")` does: ε = sqrt(ᾱ)·v + sqrt(1 − ᾱ)·x.
(Converting each output to ε with its own sample first is another multistep method.)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from asva_jax.schedulers.noise_schedule import PREDICTION_TYPES
from asva_jax.schedulers.scheduler import (NUM_TRAIN_TIMESTEPS, Plan, SchedulerError, check_steps,
                                           default_alphas_cumprod, f32, leading_timesteps)


def plms_timesteps(num_inference_steps: int, steps_offset: int = 1,
                   num_train_timesteps: int = NUM_TRAIN_TIMESTEPS) -> np.ndarray:
  """The n + 1 call timesteps: leading spacing with the second-to-last repeated, descending."""
  base = leading_timesteps(num_inference_steps, steps_offset, num_train_timesteps)[::-1]
  return np.concatenate([base[:-1], base[-2:-1], base[-1:]])[::-1].copy()


def transfer_coefficients(alpha: np.float32, alpha_prev: np.float32) -> tuple[np.float32, ...]:
  """(sqrt(a'/a), a' - a, a·sqrt(1-a') + sqrt(a(1-a)a')), in diffusers' float32 order:
  x' = c_sample·x − (c_diff·ε) / c_denom."""
  beta, beta_prev = f32(1) - alpha, f32(1) - alpha_prev
  sample_coeff = (alpha_prev / alpha) ** f32(0.5)
  denom = alpha * beta_prev ** f32(0.5) + (alpha * beta * alpha_prev) ** f32(0.5)
  return sample_coeff, alpha_prev - alpha, denom


def output_coefficients(alpha: np.float32, prediction_type: str) -> tuple[np.float32, np.float32]:
  """(c_out, c_sample) with ε = c_out·output + c_sample·x: (1, 0) for ε, (sqrt(a), sqrt(1 − a)) for v."""
  if prediction_type == "epsilon":
    return f32(1), f32(0)
  if prediction_type == "v_prediction":
    return alpha ** f32(0.5), (f32(1) - alpha) ** f32(0.5)
  raise SchedulerError(f"prediction_type {prediction_type!r}: expected one of {PREDICTION_TYPES}")


def plan(num_inference_steps: int = 50, *, aliased: bool = True, alphas_cumprod=None,
         prediction_type: str = "epsilon", steps_offset: int = 1,
         num_train_timesteps: int = NUM_TRAIN_TIMESTEPS) -> Plan:
  name = "pndm" if aliased else "plms"
  n = check_steps(name, num_inference_steps, num_train_timesteps)
  ac = default_alphas_cumprod(alphas_cumprod)
  final = ac[0]  # set_alpha_to_one=False
  ratio = num_train_timesteps // n
  timesteps = plms_timesteps(n, steps_offset, num_train_timesteps)
  rows = []
  for i, t in enumerate(timesteps):
    t_from, t_to = (t + ratio, t) if i == 1 else (t, t - ratio)
    rows.append(transfer_coefficients(ac[t_from], ac[t_to] if t_to >= 0 else final)
                + output_coefficients(ac[t_from], prediction_type))
  rows = np.asarray(rows, np.float32)
  tables = dict(zip(("sample_coeff", "diff", "denom", "out_coeff", "out_sample_coeff"), rows.T))
  return Plan(name, timesteps.astype(np.int32), tables, init, step_aliased if aliased else step_textbook,
              prediction_type=prediction_type)


def init(sample: jax.Array) -> dict:
  """The last four stored model outputs (oldest first) and the sample remembered at call 0."""
  return {"ets": jnp.zeros((4,) + sample.shape, sample.dtype), "cur_sample": jnp.zeros_like(sample)}


def _step(aliased: bool, tab, state, i, output, sample):
  ets, cur = state["ets"], state["cur_sample"]
  stored = jnp.concatenate([ets[1:], output[None]])

  def call0():
    return output, sample, stored, sample

  def call1():  # output not stored; restart from the provisional (aliased) or remembered latents
    return (output + ets[3]) / 2, sample if aliased else cur, ets, cur

  def call2():
    return (3 * stored[3] - stored[2]) / 2, sample, stored, cur

  def call3():
    return (23 * stored[3] - 16 * stored[2] + 5 * stored[1]) / 12, sample, stored, cur

  def later():
    e = (1 / 24) * (55 * stored[3] - 59 * stored[2] + 37 * stored[1] - 9 * stored[0])
    return e, sample, stored, cur

  e, base, ets, cur = jax.lax.switch(jnp.minimum(i, 4), (call0, call1, call2, call3, later))
  e = tab["out_coeff"] * e + tab["out_sample_coeff"] * base  # -> ε (the identity for an ε-model)
  prev = tab["sample_coeff"] * base - (tab["diff"] * e) / tab["denom"]
  return prev, {"ets": ets, "cur_sample": cur}


def step_aliased(tab, state, i, output, sample, noise=None):
  del noise
  return _step(True, tab, state, i, output, sample)


def step_textbook(tab, state, i, output, sample, noise=None):
  del noise
  return _step(False, tab, state, i, output, sample)
