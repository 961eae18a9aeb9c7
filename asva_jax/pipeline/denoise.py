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
  "ddpm", "dpm++2m", "pndm-eps"/"plms-eps" (see `schedulers`); or a `schedulers.Plan`.
  Stochastic samplers (ddim with eta > 0, ddpm) draw their per-step noise from `key`
  (`step_noise`): one key for the whole batch, or B keys, one per clip, so that a clip's
  noise does not depend on its batch.

  prediction_type: what the UNet was trained to output ("epsilon", AVSyncD's; or
  "v_prediction"), on the noise schedule `alphas_cumprod` (ᾱ_t; SD1.5's by default), which
  also builds the sampler's plan. Guidance is linear, so it combines either output; a
  v-output is then stepped as diffusers' scheduler with `prediction_type="v_prediction"`
  steps it (PLMS combines the v's of several calls and converts once; the others convert
  each call's output with the current sample).

  Guidance (docs/reference.md §7.3): a branch runs only when its scale is > 1, and all running
  branches share one batched UNet call per step. The loop is one `lax.scan` under
  `jax.jit`: the same shapes, sampler and guidance mode reuse one compilation, and the
  scales are traced (4.0 -> 8.0 does not recompile; 4.0 -> 1.0 changes the mode).
  """
  if prediction_type not in PREDICTION_TYPES:
    raise guidance.GuidanceError(f"prediction_type {prediction_type!r}: expected one of {PREDICTION_TYPES}")
  plan = scheduler if isinstance(scheduler, Plan) else make_plan(
      scheduler, num_inference_steps, eta=eta, alphas_cumprod=alphas_cumprod, prediction_type=prediction_type)
  convert = plan.prediction_type != prediction_type  # the plan steps ε: convert the v-output per call
  if convert and plan.prediction_type != "epsilon":
    raise guidance.GuidanceError(f"scheduler {plan.name!r} steps {plan.prediction_type} outputs; "
                                 f"the UNet outputs {prediction_type}")
  mode = guidance.guidance_mode(audio_guidance, text_guidance)
  latents = jnp.asarray(latents)
  if latents.ndim != 5 or latents.shape[1] < 2:
    raise guidance.GuidanceError(f"latents: expected (B, F >= 2, h, w, c), got shape {latents.shape}")
  b, f = latents.shape[:2]
  conds = guidance.batch_conditions(mode, b, f, text=text, audio=audio, audio_mask=audio_mask,
                                    null_text=null_text, null_audio=null_audio,
                                    null_audio_mask=null_audio_mask)
  if plan.stochastic and key is None:
    raise guidance.GuidanceError(f"scheduler {plan.name!r} is stochastic: pass key=jax.random.key(seed)")
  if plan.stochastic and jnp.ndim(key) != 0 and jnp.shape(key) != (b,):
    raise guidance.GuidanceError(f"key: expected one key or {b} (one per clip), got shape {jnp.shape(key)}")
  graphdef, state = nnx.split(unet)
  scales = jnp.asarray([audio_guidance, text_guidance], jnp.float32)
  tables = {k: jnp.asarray(v) for k, v in plan.tables.items()}
  alphas = jnp.asarray(scaled_linear_alphas_cumprod() if alphas_cumprod is None else alphas_cumprod, jnp.float32)
  out = _loop(graphdef, state, latents.astype(jnp.float32), conds, scales, jnp.asarray(plan.timesteps),
              tables, key if plan.stochastic else None, alphas, mode=mode, init=plan.init, step=plan.step,
              prediction_type=prediction_type if convert else "epsilon")
  return out.astype(latents.dtype)


def step_noise(key: jax.Array, i, shape) -> jax.Array:
  """The standard-normal noise (`shape`: (B, F-1, h, w, c)) a stochastic sampler adds at call i:
  from one key for the batch, or clip b's from key[b] alone (a clip's noise is then the same in
  any batch, at any position)."""
  if jnp.ndim(key) == 0:
    return jax.random.normal(jax.random.fold_in(key, i), shape, jnp.float32)
  return jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, i), shape[1:], jnp.float32))(key)


@functools.partial(jax.jit, static_argnames=("graphdef", "mode", "init", "step", "prediction_type"))
def _loop(graphdef, state, latents, conds, scales, timesteps, tables, key, alphas, *, mode, init, step,
          prediction_type):
  """prediction_type: the UNet's output, converted to ε per call; "epsilon" passes it on as is."""
  text, audio, mask = conds
  branches = len(guidance.BRANCHES[mode])
  sample = latents[:, 1:]

  def body(carry, xs):
    x, sched_state = carry
    t, i, tab = xs
    unet = nnx.merge(graphdef, state)
    out = unet(jnp.concatenate([x] * branches), t, text, audio, mask).astype(jnp.float32)
    out = guidance.combine(mode, out, scales[0], scales[1])
    out = epsilon_from_output(out, x, t, alphas, prediction_type)
    noise = None if key is None else step_noise(key, i, sample.shape)
    prev, sched_state = step(tab, sched_state, i, out[:, 1:], x[:, 1:], noise)
    return (x.at[:, 1:].set(prev.astype(x.dtype)), sched_state), None

  n = timesteps.shape[0]
  (x, _), _ = jax.lax.scan(body, (latents, init(sample)), (timesteps, jnp.arange(n), tables))
  return x
