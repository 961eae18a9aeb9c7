"""The sampling loop of AVSyncD as one jitted function (docs/reference.md §1.2 step 7, §7).

Frame 0 holds the conditioning image's latent and is never updated; every call feeds
all F frames to the UNet at one timestep, and the sampler (and its history) sees only
frames 1..F-1 (pitfall §10.12).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from asva_jax.pipeline import guidance
from asva_jax.schedulers import Plan, make_plan
from asva_jax.schedulers.noise_schedule import PREDICTION_TYPES, epsilon_from_output, scaled_linear_alphas_cumprod


def denoise(unet, latents, *, text, audio, audio_mask, null_text, null_audio, null_audio_mask,
            audio_guidance=4.0, text_guidance=1.0, num_inference_steps=50, scheduler="pndm",
            eta: float = 0.0, key: jax.Array | None = None, prediction_type: str = "epsilon",
            alphas_cumprod=None) -> jax.Array:
  """Runs the whole sampler and returns the final latents (same shape), before decoding.

  latents (B, F, h, w, c), channels-last: frame 0 the scaled image latent, frames 1..F-1
  the initial noise times the scheduler's `init_noise_sigma` (1 for every sampler here).
  text (B, L, D) or (B, F, L, D); audio (B, T, D) or (B, F, T, D); audio_mask (B, F, T)
  or (F, T) boolean. The null conditions take the same shapes with batch B or 1.

  scheduler: "pndm" (default) reproduces the original pipeline exactly, including its
  warm-up aliasing (PLMS's second call restarts from the provisional latents, because
  the original writes each step into the view it handed the scheduler); "plms" is
  diffusers' textbook PLMS (restarts from the remembered latents); "ddim" (with `eta`),
  "ddpm", "dpm++2m"; or a `schedulers.Plan`. Stochastic samplers (ddim with eta > 0,
  ddpm) draw their per-step noise from `key` (`step_noise`).

  prediction_type: what the UNet was trained to output ("epsilon", AVSyncD's; or
  "v_prediction", converted to ε with `alphas_cumprod`, SD1.5's schedule by default, after
  guidance, which is linear in either).

  Guidance (docs/reference.md §7.3): a branch runs only when its scale is > 1, and all running
  branches share one batched UNet call per step. The loop is one `lax.scan` under
  `jax.jit`: the same shapes, sampler and guidance mode reuse one compilation, and the
  scales are traced (4.0 -> 8.0 does not recompile; 4.0 -> 1.0 changes the mode).
  """
  plan = scheduler if isinstance(scheduler, Plan) else make_plan(scheduler, num_inference_steps, eta=eta)
  mode = guidance.guidance_mode(audio_guidance, text_guidance)
  latents = jnp.asarray(latents)
  if latents.ndim != 5 or latents.shape[1] < 2:
    raise guidance.GuidanceError(f"latents: expected (B, F >= 2, h, w, c), got shape {latents.shape}")
  b, f = latents.shape[:2]
  conds = guidance.batch_conditions(mode, b, f, text=text, audio=audio, audio_mask=audio_mask,
                                    null_text=null_text, null_audio=null_audio,
                                    null_audio_mask=null_audio_mask)
  if prediction_type not in PREDICTION_TYPES:
    raise guidance.GuidanceError(f"prediction_type {prediction_type!r}: expected one of {PREDICTION_TYPES}")
  if plan.stochastic and key is None:
    raise guidance.GuidanceError(f"scheduler {plan.name!r} is stochastic: pass key=jax.random.key(seed)")
  graphdef, state = nnx.split(unet)
  scales = jnp.asarray([audio_guidance, text_guidance], jnp.float32)
  tables = {k: jnp.asarray(v) for k, v in plan.tables.items()}
  alphas = jnp.asarray(scaled_linear_alphas_cumprod() if alphas_cumprod is None else alphas_cumprod, jnp.float32)
  out = _loop(graphdef, state, latents.astype(jnp.float32), conds, scales, jnp.asarray(plan.timesteps),
              tables, key if plan.stochastic else None, alphas, mode=mode, init=plan.init, step=plan.step,
              prediction_type=prediction_type)
  return out.astype(latents.dtype)


def step_noise(key: jax.Array, i, shape) -> jax.Array:
  """The standard-normal noise a stochastic sampler adds at call i (frames 1..F-1 only)."""
  return jax.random.normal(jax.random.fold_in(key, i), shape, jnp.float32)


@functools.partial(jax.jit, static_argnames=("graphdef", "mode", "init", "step", "prediction_type"))
def _loop(graphdef, state, latents, conds, scales, timesteps, tables, key, alphas, *, mode, init, step,
          prediction_type):
  text, audio, mask = conds
  branches = len(guidance.BRANCHES[mode])
  sample = latents[:, 1:]

  def body(carry, xs):
    x, sched_state = carry
    t, i, tab = xs
    unet = nnx.merge(graphdef, state)
    eps = unet(jnp.concatenate([x] * branches), t, text, audio, mask).astype(jnp.float32)
    eps = guidance.combine(mode, eps, scales[0], scales[1])
    eps = epsilon_from_output(eps, x, t, alphas, prediction_type)
    noise = None if key is None else step_noise(key, i, sample.shape)
    prev, sched_state = step(tab, sched_state, i, eps[:, 1:], x[:, 1:], noise)
    return (x.at[:, 1:].set(prev.astype(x.dtype)), sched_state), None

  n = timesteps.shape[0]
  (x, _), _ = jax.lax.scan(body, (latents, init(sample)), (timesteps, jnp.arange(n), tables))
  return x
