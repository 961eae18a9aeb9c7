"""Noise schedules and samplers as pure functions (see `scheduler.Plan`).

`make_plan(name, num_inference_steps, eta=0.0)` for the names in `SCHEDULERS`:
  pndm     PLMS as the original pipeline runs it (warm-up aliasing included): the default
  plms     diffusers' textbook PLMS
  ddim     DDIM, deterministic for eta = 0
  ddpm     ancestral DDPM
  dpm++2m  DPM-Solver++ 2M, 15-25 steps
"""

from __future__ import annotations

from asva_jax.schedulers.scheduler import Plan, SchedulerError

SCHEDULERS = ("pndm", "plms", "ddim", "ddpm", "dpm++2m")


def make_plan(name: str, num_inference_steps: int, *, eta: float = 0.0, alphas_cumprod=None) -> Plan:
  from asva_jax.schedulers import ddim, ddpm, dpm_solver, pndm
  kw = dict(alphas_cumprod=alphas_cumprod)
  if alphas_cumprod is not None:  # a run's own schedule: its timesteps span its length
    kw["num_train_timesteps"] = len(alphas_cumprod)
  if name in ("pndm", "plms"):
    return pndm.plan(num_inference_steps, aliased=name == "pndm", **kw)
  if name == "ddim":
    return ddim.plan(num_inference_steps, eta=eta, **kw)
  if name == "ddpm":
    return ddpm.plan(num_inference_steps, **kw)
  if name == "dpm++2m":
    return dpm_solver.plan(num_inference_steps, **kw)
  raise SchedulerError(f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULERS)}")


__all__ = ["Plan", "SCHEDULERS", "SchedulerError", "make_plan"]
