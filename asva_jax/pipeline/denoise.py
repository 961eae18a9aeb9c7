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

from asva_jax.models.unet_3d import AudioUNet3D, audio_keys_per_frame
from asva_jax.pipeline import guidance
from asva_jax.schedulers import Plan, make_plan
from asva_jax.schedulers.noise_schedule import PREDICTION_TYPES, epsilon_from_output, scaled_linear_alphas_cumprod


def denoise(unet, latents, *, text, audio, audio_mask, null_text, null_audio, null_audio_mask,
            audio_guidance=4.0, text_guidance=1.0, num_inference_steps=50, scheduler="pndm",
            eta: float = 0.0, key: jax.Array | None = None, prediction_type: str = "epsilon",
            alphas_cumprod=None, loop: str | None = None, audio_keys: int | str | None = "auto",
            clips_per_call: int | str | None = "auto") -> jax.Array:
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
  loop: "scan" (the whole loop as one program) or "calls" (one jitted step per UNet call, the same
  arithmetic); None picks `default_loop()`, the faster structure on this backend.
  audio_keys: the UNet's `audio_keys` (each frame attends to its own audio tokens only); "auto" is
  `audio_keys_per_frame` of the mask (the faster structure on this backend), None the full masked form.
  clips_per_call: UNet calls take this many clips (with all their guidance branches) at a time, one
  after another; None: the whole batch in one call; "auto": `default_clips_per_call()`.
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
  loop = default_loop() if loop is None else loop
  if loop not in LOOPS:
    raise guidance.GuidanceError(f"loop {loop!r}: expected one of {LOOPS}")
  run = _loop if loop == "scan" else _calls
  if clips_per_call == "auto":
    clips_per_call = default_clips_per_call()
  if clips_per_call is not None and (not isinstance(clips_per_call, int) or clips_per_call < 1
                                     or b % clips_per_call):
    raise guidance.GuidanceError(f"clips_per_call {clips_per_call!r}: expected None, 'auto' or a positive "
                                 f"divisor of the batch ({b})")
  if isinstance(audio_keys, str):
    if audio_keys != "auto":
      raise guidance.GuidanceError(f"audio_keys {audio_keys!r}: expected 'auto', None or an int")
    audio_keys = audio_keys_per_frame(conds[2]) if isinstance(unet, AudioUNet3D) else None
  out = run(graphdef, state, latents.astype(jnp.float32), conds, scales, jnp.asarray(plan.timesteps),
              tables, key if plan.stochastic else None, alphas, mode=mode, init=plan.init, step=plan.step,
              prediction_type=prediction_type if convert else "epsilon", audio_keys=audio_keys,
              clips_per_call=clips_per_call)
  return out.astype(latents.dtype)


def step_noise(key: jax.Array, i, shape) -> jax.Array:
  """The standard-normal noise (`shape`: (B, F-1, h, w, c)) a stochastic sampler adds at call i:
  from one key for the batch, or clip b's from key[b] alone (a clip's noise is then the same in
  any batch, at any position)."""
  if jnp.ndim(key) == 0:
    return jax.random.normal(jax.random.fold_in(key, i), shape, jnp.float32)
  return jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, i), shape[1:], jnp.float32))(key)


LOOPS = ("scan", "calls")


def default_loop() -> str:
  """The loop structure that measured faster on the current backend (docs/cpu_speed.md §2):
  "scan" everywhere (one program, no per-step dispatch)."""
  return "scan"


def default_clips_per_call() -> int | None:
  """CPU: one clip per UNet call (a batch's activations outgrow the caches and batch 8 cost more per
  clip than batch 1, docs/cpu_speed.md); elsewhere the whole batch in one call."""
  return 1 if jax.default_backend() == "cpu" else None


def _in_groups(fn, clips: int | None, branches: int, *args):
  """fn(*args) over branch-major batches (branches * B, ...), `clips` clips (all their branches) per
  call, one call after another (`lax.map`); None: one call for the whole batch."""
  b = args[0].shape[0] // branches
  if clips is None or clips >= b:
    return fn(*args)
  groups = lambda a: a.reshape((branches, b // clips, clips) + a.shape[1:]).swapaxes(0, 1).reshape(  # noqa: E731
      (b // clips, branches * clips) + a.shape[1:])
  out = jax.lax.map(lambda a: fn(*a), tuple(groups(a) for a in args))
  return out.reshape((b // clips, branches, clips) + out.shape[2:]).swapaxes(0, 1).reshape(
      (branches * b,) + out.shape[2:])


def _body(graphdef, state, conds, scales, key, alphas, shape, carry, xs, *, mode, step, prediction_type,
          audio_keys, clips_per_call):
  """One sampler step: all guidance branches in one UNet call, guidance, the sampler's update."""
  text, audio, mask = conds
  branches = len(guidance.BRANCHES[mode])
  x, sched_state = carry
  t, i, tab = xs
  unet = nnx.merge(graphdef, state)
  options = {} if audio_keys is None else dict(audio_keys=audio_keys)
  call = lambda x, text, audio, mask: unet(x, t, text, audio, mask, **options)  # noqa: E731
  out = _in_groups(call, clips_per_call, branches, jnp.concatenate([x] * branches), text, audio,
                   mask).astype(jnp.float32)
  out = guidance.combine(mode, out, scales[0], scales[1])
  out = epsilon_from_output(out, x, t, alphas, prediction_type)
  noise = None if key is None else step_noise(key, i, shape)
  prev, sched_state = step(tab, sched_state, i, out[:, 1:], x[:, 1:], noise)
  return x.at[:, 1:].set(prev.astype(x.dtype)), sched_state


@functools.partial(jax.jit, static_argnames=("graphdef", "mode", "init", "step", "prediction_type",
                                                   "audio_keys", "clips_per_call"))
def _loop(graphdef, state, latents, conds, scales, timesteps, tables, key, alphas, *, mode, init, step,
          prediction_type, audio_keys, clips_per_call):
  """prediction_type: the UNet's output, converted to ε per call; "epsilon" passes it on as is."""
  sample = latents[:, 1:]
  body = functools.partial(_body, graphdef, state, conds, scales, key, alphas, sample.shape, mode=mode,
                           step=step, prediction_type=prediction_type, audio_keys=audio_keys,
                           clips_per_call=clips_per_call)
  n = timesteps.shape[0]
  (x, _), _ = jax.lax.scan(lambda c, xs: (body(c, xs), None), (latents, init(sample)),
                           (timesteps, jnp.arange(n), tables))
  return x


@functools.partial(jax.jit, static_argnames=("graphdef", "mode", "step", "prediction_type", "audio_keys",
                                                   "clips_per_call"))
def _call(graphdef, state, carry, conds, scales, timesteps, tables, i, key, alphas, *, mode, step,
          prediction_type, audio_keys, clips_per_call):
  """Step i of the loop as its own program (the "calls" structure)."""
  xs = (timesteps[i], i, jax.tree.map(lambda a: a[i], tables))
  return _body(graphdef, state, conds, scales, key, alphas, carry[0][:, 1:].shape, carry, xs, mode=mode,
               step=step, prediction_type=prediction_type, audio_keys=audio_keys,
               clips_per_call=clips_per_call)


def _calls(graphdef, state, latents, conds, scales, timesteps, tables, key, alphas, *, mode, init, step,
           prediction_type, audio_keys, clips_per_call):
  """The same loop as `_loop`, one jitted step per UNet call driven from Python."""
  carry = (latents, jax.jit(init)(latents[:, 1:]))
  for i in range(timesteps.shape[0]):
    carry = _call(graphdef, state, carry, conds, scales, timesteps, tables, jnp.int32(i), key, alphas,
                  mode=mode, step=step, prediction_type=prediction_type, audio_keys=audio_keys,
                  clips_per_call=clips_per_call)
  return carry[0]
