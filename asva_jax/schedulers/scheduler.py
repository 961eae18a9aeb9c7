"""What every sampler shares: a host-side plan of per-call tables and two pure functions.

A sampler is split the way `lax.scan` wants it. `plan(...)` runs once on the
host (numpy, float32 maths in diffusers' order) and yields the timestep of every
UNet call plus per-call scalar tables; `init(sample)` gives the state pytree
(the multistep history); `step(tables_i, state, i, eps, sample, noise)` returns
`(prev_sample, state)` and is traced once for the whole loop.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import jax
import numpy as np

from asva_jax.errors import AsvaError
from asva_jax.schedulers.noise_schedule import scaled_linear_alphas_cumprod

NUM_TRAIN_TIMESTEPS = 1000


class SchedulerError(AsvaError, ValueError):
  """An unknown sampler name or an impossible number of steps."""


@dataclasses.dataclass(frozen=True, eq=False)
class Plan:
  """One sampling run's schedule: `timesteps[i]` is the UNet timestep of call i, `tables[k][i]`
  the scalars step i needs. `step` and `init` are module-level functions (stable jit cache keys).
  `prediction_type` is the model output `step` takes: PLMS steps a v-model's outputs itself (it
  combines them before converting, as diffusers does); the one-step samplers take ε, and the
  sampling loop converts a v-model's output for them with the current sample and ᾱ_t."""

  name: str
  timesteps: np.ndarray
  tables: Mapping[str, np.ndarray]
  init: Callable
  step: Callable
  init_noise_sigma: float = 1.0
  stochastic: bool = False
  prediction_type: str = "epsilon"

  @property
  def num_calls(self) -> int:
    return len(self.timesteps)


def default_alphas_cumprod(alphas_cumprod=None) -> np.ndarray:
  """SD1.5's ᾱ (scaled_linear 0.00085..0.012 over 1000 steps) unless given; float32."""
  if alphas_cumprod is None:
    alphas_cumprod = scaled_linear_alphas_cumprod(NUM_TRAIN_TIMESTEPS)
  return np.asarray(alphas_cumprod, np.float32)


def check_steps(name: str, num_inference_steps: int, limit: int = NUM_TRAIN_TIMESTEPS) -> int:
  n = int(num_inference_steps)
  if n != num_inference_steps or not 1 <= n <= limit:
    raise SchedulerError(f"{name}: num_inference_steps must be an integer in [1, {limit}], "
                         f"got {num_inference_steps}")
  return n


def leading_timesteps(num_inference_steps: int, steps_offset: int = 1,
                      num_train_timesteps: int = NUM_TRAIN_TIMESTEPS) -> np.ndarray:
  """diffusers' "leading" spacing, descending: (arange(n) * (T // n) + offset)[::-1]."""
  ratio = num_train_timesteps // num_inference_steps
  return (np.arange(num_inference_steps) * ratio + steps_offset)[::-1].astype(np.int64)


def f32(x) -> np.float32:
  return np.float32(x)


def tables_at(tables: Mapping[str, jax.Array], i) -> dict:
  return {k: v[i] for k, v in tables.items()}


def stateless_init(sample):
  """`Plan.init` of the one-step samplers (DDIM, DDPM): they carry no history."""
  del sample
  return ()


def predicted_x0(tab, eps, sample):
  """x̂0 = (x_t − sqrt(1 − ᾱ_t)·ε) / sqrt(ᾱ_t), from the step's `sqrt_beta` and `sqrt_alpha`."""
  return (sample - tab["sqrt_beta"] * eps) / tab["sqrt_alpha"]
