"""Noise schedules and samplers as pure functions (see `scheduler.Plan`).

`make_plan(name, num_inference_steps, eta=0.0, alphas_cumprod=None, prediction_type="epsilon")`
for the names in `SCHEDULERS`:
  pndm     PLMS as the original pipeline runs it (warm-up aliasing included): the default
  plms     diffusers' textbook PLMS
  pndm-eps, plms-eps  the same on ε: a v-model's outputs are converted to ε call by call before
           the multistep combination (pndm and plms combine the v's, as diffusers does); the same
           as pndm and plms for an ε-model. More accurate on v-models: benchmarks/plms_v_prediction.py
  ddim     DDIM, deterministic for eta = 0
  ddpm     ancestral DDPM
  dpm++2m  DPM-Solver++ 2M, 15-25 steps
"""

from __future__ import annotations

import dataclasses

from asva_jax.schedulers.scheduler import Plan, SchedulerError

SCHEDULERS = ("pndm", "plms", "pndm-eps", "plms-eps", "ddim", "ddpm", "dpm++2m")


def make_plan(name: str, num_inference_steps: int, *, eta: float = 0.0, alphas_cumprod=None,
              prediction_type: str = "epsilon") -> Plan:
  """The plan of sampler `name` on the schedule `alphas_cumprod` (SD1.5's if None), for a UNet that
  outputs `prediction_type`; `Plan.prediction_type` says which output its step takes."""
  from asva_jax.schedulers import ddim, ddpm, dpm_solver, pndm
  from asva_jax.schedulers.noise_schedule import PREDICTION_TYPES
  if prediction_type not in PREDICTION_TYPES:
    raise SchedulerError(f"prediction_type {prediction_type!r}: expected one of {PREDICTION_TYPES}")
  kw = dict(alphas_cumprod=alphas_cumprod)
  if alphas_cumprod is not None:  # a run's own schedule: its timesteps span its length
    kw["num_train_timesteps"] = len(alphas_cumprod)
  if name in ("pndm", "plms"):
    return pndm.plan(num_inference_steps, aliased=name == "pndm", prediction_type=prediction_type, **kw)
  if name in ("pndm-eps", "plms-eps"):  # an ε-plan: the sampling loop converts a v-model's outputs per call
    return dataclasses.replace(pndm.plan(num_inference_steps, aliased=name == "pndm-eps", **kw), name=name)
  if name == "ddim":
    return ddim.plan(num_inference_steps, eta=eta, **kw)
  if name == "ddpm":
    return ddpm.plan(num_inference_steps, **kw)
  if name == "dpm++2m":
    return dpm_solver.plan(num_inference_steps, **kw)
  raise SchedulerError(f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULERS)}")


__all__ = ["Plan", "SCHEDULERS", "SchedulerError", "make_plan"]
