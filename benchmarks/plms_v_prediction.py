"""PLMS on a v-model: diffusers' way (combine the v's, convert once) against converting every v to ε
first (`pndm-eps`, `plms-eps`), with an exact model of Gaussian data, where the probability-flow
ODE has a closed form. No training and no network: it measures the samplers' integration error.

    python -m benchmarks.plms_v_prediction [--steps 10,20,50] [--dims 20000]

Data x0 ~ N(μ, diag(s²)) (μ, s drawn once); the exact v̂(x_t, t) is fed to each sampler from the
same x_T, and the final sample is compared (relative L2) with the exact ODE map
x_t' = sqrt(ᾱ')μ + sqrt((ᾱ's² + 1 − ᾱ') / (ᾱs² + 1 − ᾱ)) (x_t − sqrt(ᾱ)μ).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from asva_jax.schedulers import make_plan
from asva_jax.schedulers.scheduler import default_alphas_cumprod, tables_at


def final_error(name: str, n: int, mu: np.ndarray, s: np.ndarray, x_start: np.ndarray) -> float:
  ac = default_alphas_cumprod().astype(np.float64)

  def v_hat(x, t):
    a = ac[t]
    var = a * s ** 2 + 1 - a
    eps = np.sqrt(1 - a) * (x - np.sqrt(a) * mu) / var
    x0 = mu + np.sqrt(a) * s ** 2 * (x - np.sqrt(a) * mu) / var
    return np.sqrt(a) * eps - np.sqrt(1 - a) * x0

  plan = make_plan(name, n, prediction_type="v_prediction")
  x = jnp.asarray(x_start, jnp.float32)
  state, step = plan.init(x), jax.jit(plan.step)
  for i, t in enumerate(plan.timesteps):
    xn = np.asarray(x, np.float64)
    out = v_hat(xn, t)
    if plan.prediction_type == "epsilon":  # what the sampling loop does for an ε-plan
      out = np.sqrt(1 - ac[t]) * xn + np.sqrt(ac[t]) * out
    x, state = step(tables_at(plan.tables, i), state, jnp.int32(i), jnp.asarray(out, jnp.float32), x)
  a, a_end = ac[plan.timesteps[0]], ac[0]  # the last step lands on ᾱ_0 (set_alpha_to_one False)
  exact = np.sqrt(a_end) * mu + np.sqrt((a_end * s ** 2 + 1 - a_end) / (a * s ** 2 + 1 - a)) * (x_start - np.sqrt(a) * mu)
  return float(np.linalg.norm(np.asarray(x, np.float64) - exact) / np.linalg.norm(exact))


def main(argv, fv: flags.FlagValues = flags.FLAGS):
  del argv
  rng = np.random.default_rng(0)
  mu, s = rng.uniform(-1, 1, fv.dims), rng.uniform(0.05, 1.0, fv.dims)
  x_start = rng.standard_normal(fv.dims)
  for name in ("pndm", "pndm-eps", "plms", "plms-eps"):
    errors = [final_error(name, int(n), mu, s, x_start) for n in fv.steps]
    print(f"{name:9s} " + "  ".join(f"{n} steps: {e:.2e}" for n, e in zip(fv.steps, errors)), flush=True)


def define_flags(fv: flags.FlagValues = flags.FLAGS) -> None:
  flags.DEFINE_list("steps", ["10", "20", "50"], "sampler steps", flag_values=fv)
  flags.DEFINE_integer("dims", 20000, "dimensions of the Gaussian data", flag_values=fv)


if __name__ == "__main__":
  from asva_jax.commands import runner
  runner.run(main, define_flags=define_flags)
