"""Each sampler's timesteps and per-step maths against diffusers' PyTorch scheduler of the same config."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, PNDMScheduler

from asva_jax.schedulers import SCHEDULERS, SchedulerError, make_plan, scheduler as scheduler_lib
from asva_jax.schedulers.noise_schedule import scaled_linear_alphas_cumprod
from tests.reference_models import SD15_SCHEDULER

SHAPE = (2, 3, 4, 4, 4)


def outputs(n, seed=0):
  """A deterministic sequence of fake model outputs, a fixed start sample, fixed step noise."""
  rng = np.random.default_rng(seed)
  eps = rng.standard_normal((n,) + SHAPE).astype(np.float32)
  noise = rng.standard_normal((n,) + SHAPE).astype(np.float32)
  return eps, rng.standard_normal(SHAPE).astype(np.float32), noise


def run_ours(plan, eps, x, noise):
  state = plan.init(jnp.asarray(x))
  step = jax.jit(plan.step)
  xs = []
  for i in range(plan.num_calls):
    tab = scheduler_lib.tables_at(plan.tables, i)
    x, state = step(tab, state, jnp.int32(i), jnp.asarray(eps[i]), jnp.asarray(x),
                    jnp.asarray(noise[i]) if plan.stochastic else None)
    xs.append(np.asarray(x))
  return xs


def run_diffusers(sched, n, eps, x, noise, eta=None):
  sched.set_timesteps(n)
  x = torch.from_numpy(x.copy())
  xs = []
  for i, t in enumerate(sched.timesteps):
    e = torch.from_numpy(eps[i])
    if isinstance(sched, DDIMScheduler):
      kw = dict(eta=eta, variance_noise=torch.from_numpy(noise[i])) if eta else {}
      x = sched.step(e, t, x, **kw).prev_sample
    elif isinstance(sched, DDPMScheduler):
      _NEXT_DDPM_NOISE.append(torch.from_numpy(noise[i]))
      x = sched.step(e, t, x).prev_sample
      _NEXT_DDPM_NOISE.clear()
    else:
      x = sched.step(e, t, x).prev_sample
    xs.append(x.numpy().copy())
  return [int(t) for t in sched.timesteps], xs


# DDPMScheduler.step takes no variance_noise: its one draw per step is served from here.
_NEXT_DDPM_NOISE = []


@pytest.fixture(autouse=True)
def fixed_noise_draws(monkeypatch):
  import diffusers.schedulers.scheduling_ddpm as ddpm_module
  original = ddpm_module.randn_tensor

  def randn(shape, generator=None, **kw):
    if _NEXT_DDPM_NOISE:
      return _NEXT_DDPM_NOISE.pop().reshape(shape)
    return original(shape, generator=generator, **kw)

  monkeypatch.setattr(ddpm_module, "randn_tensor", randn)


def close(ours, ref, rtol):
  assert len(ours) == len(ref)
  for i, (a, b) in enumerate(zip(ours, ref)):
    err = np.abs(a - b).max() / np.abs(b).max()
    assert err < rtol, (i, err)


def test_pndm_50_timesteps_are_the_originals():
  t = make_plan("pndm", 50).timesteps
  assert len(t) == 51 and list(t[:4]) == [981, 961, 961, 941] and list(t[-3:]) == [41, 21, 1]


CASES = [("plms", PNDMScheduler, {}, (1, 2, 3, 7, 50)),
         ("ddim", DDIMScheduler, {}, (1, 5, 25)),
         ("ddim", DDIMScheduler, {"eta": 0.7}, (4, 10)),
         ("ddpm", DDPMScheduler, {}, (3, 10, 100)),
         ("dpm++2m", DPMSolverMultistepScheduler, {}, (1, 2, 3, 15, 25))]


@pytest.mark.parametrize("name,cls,options,steps", CASES, ids=lambda c: str(c))
def test_steps_match_diffusers(name, cls, options, steps):
  """Same ᾱ as diffusers: float32 round-off at every step; our own ᾱ (float64 maths): ~1e-6 apart."""
  sched = cls.from_config(SD15_SCHEDULER)
  ac = sched.alphas_cumprod.numpy()
  for n in steps:
    plan = make_plan(name, n, alphas_cumprod=ac, **options)
    eps, x, noise = outputs(plan.num_calls, seed=n)
    timesteps, ref = run_diffusers(sched, n, eps, x, noise, eta=options.get("eta"))
    assert list(plan.timesteps) == timesteps, (name, n)
    close(run_ours(plan, eps, x, noise), ref, 2e-6)
    default = make_plan(name, n, **options)
    close(run_ours(default, eps, x, noise), ref, 2e-5)


def run_diffusers_in_place(sched, n, outputs, x):
  """The original's loop: the scheduler steps the view latents[:, 1:], which the result then overwrites."""
  sched.set_timesteps(n)
  latents = torch.zeros((SHAPE[0], SHAPE[1] + 1) + SHAPE[2:])
  latents[:, 1:] = torch.from_numpy(x)
  ref = []
  for i, t in enumerate(sched.timesteps):
    latents[:, 1:] = sched.step(torch.from_numpy(outputs[i]), t, latents[:, 1:]).prev_sample
    ref.append(latents[:, 1:].numpy().copy())
  return ref


def test_pndm_aliasing_restarts_call_1_from_the_provisional_sample():
  """The original passes a view and writes into it: diffusers' remembered sample is overwritten."""
  sched = PNDMScheduler.from_config(SD15_SCHEDULER)
  n = 6
  plan = make_plan("pndm", n, alphas_cumprod=sched.alphas_cumprod.numpy())
  eps, x, _ = outputs(plan.num_calls)
  ref = run_diffusers_in_place(sched, n, eps, x)
  ours = run_ours(plan, eps, x, None)
  close(ours, ref, 2e-6)
  textbook = run_ours(make_plan("plms", n), eps, x, None)
  assert np.abs(textbook[1] - ours[1]).max() > 1e-3  # the variants part at call 1


def test_default_alphas_match_the_training_schedule():
  ac = DDPMScheduler.from_config(SD15_SCHEDULER).alphas_cumprod.numpy()
  assert np.allclose(scaled_linear_alphas_cumprod(), ac, rtol=2e-6, atol=0)


@pytest.mark.parametrize("name,n", [("nope", 10), ("pndm", 0), ("ddim", 1001), ("ddpm", 1000), ("pndm", 2.5)])
def test_bad_plans_are_refused(name, n):
  with pytest.raises(SchedulerError):
    make_plan(name, n)
  with pytest.raises(SchedulerError, match="prediction_type"):
    make_plan("pndm", 10, prediction_type="sample")


def test_every_name_builds():
  for name in SCHEDULERS:
    plan = make_plan(name, 10, prediction_type="v_prediction")
    assert plan.num_calls in (10, 11) and plan.name == name


def test_v_prediction_target_matches_diffusers_velocity():
  """training_target(.., "v_prediction") is diffusers' get_velocity; epsilon_from_output inverts it."""
  from asva_jax.schedulers.noise_schedule import add_noise, epsilon_from_output, training_target
  sched = DDPMScheduler.from_config(SD15_SCHEDULER)
  rng = np.random.default_rng(3)
  x0, noise = (rng.standard_normal((4, 3, 4, 4, 4)).astype(np.float32) for _ in range(2))
  t = np.array([0, 333, 901, 999])
  ac = jnp.asarray(sched.alphas_cumprod.numpy())
  ref = sched.get_velocity(torch.from_numpy(x0), torch.from_numpy(noise), torch.from_numpy(t)).numpy()
  v = np.asarray(training_target(jnp.asarray(x0), jnp.asarray(noise), jnp.asarray(t), ac, "v_prediction"))
  np.testing.assert_allclose(v, ref, rtol=1e-5, atol=1e-6)
  xt = add_noise(jnp.asarray(x0), jnp.asarray(noise), jnp.asarray(t), ac)
  np.testing.assert_allclose(np.asarray(epsilon_from_output(jnp.asarray(v), xt, jnp.asarray(t), ac, "v_prediction")),
                             noise, atol=2e-5)
  np.testing.assert_array_equal(np.asarray(training_target(jnp.asarray(x0), jnp.asarray(noise), jnp.asarray(t), ac)),
                                noise)
  with pytest.raises(ValueError, match="prediction_type"):
    training_target(jnp.asarray(x0), jnp.asarray(noise), jnp.asarray(t), ac, "sample")


@pytest.mark.parametrize("name,cls", [("ddim", DDIMScheduler), ("ddpm", DDPMScheduler), ("plms", PNDMScheduler),
                                      ("dpm++2m", DPMSolverMultistepScheduler)])
def test_v_prediction_steps_match_diffusers(name, cls):
  """With prediction_type="v_prediction", each step equals diffusers' scheduler of that prediction type:
  DDIM, DDPM and DPM-Solver++ take ε = epsilon_from_output(v) of the current sample; PLMS takes the raw v's (diffusers
  combines them and converts once)."""
  from asva_jax.schedulers.noise_schedule import epsilon_from_output
  sched = cls.from_config({**SD15_SCHEDULER, "prediction_type": "v_prediction"})
  ac = sched.alphas_cumprod.numpy()
  plan = make_plan(name, 10, alphas_cumprod=ac, prediction_type="v_prediction")
  assert plan.prediction_type == ("v_prediction" if name == "plms" else "epsilon")
  v, x, noise = outputs(plan.num_calls, seed=5)
  timesteps, ref = run_diffusers(sched, 10, v, x, noise)
  state, ours, xj = plan.init(jnp.asarray(x)), [], jnp.asarray(x)
  for i, t in enumerate(timesteps):
    out = jnp.asarray(v[i])
    if plan.prediction_type == "epsilon":
      out = epsilon_from_output(out, xj, jnp.int32(t), jnp.asarray(ac), "v_prediction")
    xj, state = plan.step(scheduler_lib.tables_at(plan.tables, i), state, jnp.int32(i), out, xj,
                          jnp.asarray(noise[i]) if plan.stochastic else None)
    ours.append(np.asarray(xj))
  close(ours, ref, 2e-5)


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_pndm_with_v_prediction_equals_diffusers_with_the_originals_aliasing(n):
  """The original-style PLMS on a v-model: diffusers' PNDMScheduler(prediction_type="v_prediction")
  stepping a view that the loop overwrites in place (call 1 restarts from the provisional sample,
  and converts the averaged v with it). Converting every v to ε first is another sampler."""
  from asva_jax.schedulers.noise_schedule import epsilon_from_output
  sched = PNDMScheduler.from_config({**SD15_SCHEDULER, "prediction_type": "v_prediction"})
  ac = sched.alphas_cumprod.numpy()
  plan = make_plan("pndm", n, alphas_cumprod=ac, prediction_type="v_prediction")
  v, x, _ = outputs(plan.num_calls, seed=n + 11)
  ref = run_diffusers_in_place(sched, n, v, x)
  close(run_ours(plan, v, x, None), ref, 2e-6)
  # the same v's converted to ε one by one, stepped by the ε-plan: not diffusers' sampler
  eps_plan, xj = make_plan("pndm", n, alphas_cumprod=ac), jnp.asarray(x)
  state = eps_plan.init(xj)
  for i, t in enumerate(plan.timesteps):
    eps = epsilon_from_output(jnp.asarray(v[i]), xj, jnp.int32(t), jnp.asarray(ac), "v_prediction")
    xj, state = eps_plan.step(scheduler_lib.tables_at(eps_plan.tables, i), state, jnp.int32(i), eps, xj)
  if n > 1:
    assert rel_diff(np.asarray(xj), ref[-1]) > 1e-3


def test_eps_first_plms_integrates_an_exact_v_model_more_accurately():
  """Why pndm-eps/plms-eps exist: on Gaussian data with the exact v̂, converting each v to ε before
  the multistep combination lands closer to the closed-form ODE solution than diffusers' way."""
  from benchmarks.plms_v_prediction import final_error
  rng = np.random.default_rng(0)
  mu, s, x = rng.uniform(-1, 1, 2000), rng.uniform(0.05, 1.0, 2000), rng.standard_normal(2000)
  for n in (10, 20):
    for name in ("pndm", "plms"):
      assert final_error(name + "-eps", n, mu, s, x) < 0.7 * final_error(name, n, mu, s, x)


def rel_diff(a, b):
  return float(np.linalg.norm(a - b) / np.linalg.norm(b))
