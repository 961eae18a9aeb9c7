"""`denoise` against a plain Python loop over diffusers' PyTorch schedulers, driven as the original
pipeline drives them (channels-first latents, the scheduler stepping the view `latents[:, :, 1:]`
and the result written back into that view in place), for every guidance case."""

import contextlib
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, PNDMScheduler
from flax import nnx

from asva_jax.pipeline import denoise
from asva_jax.pipeline.guidance import GuidanceError
from tests.reference_models import SD15_SCHEDULER

# The module, not the function of the same name that `asva_jax.pipeline` exports.
denoise_module = importlib.import_module("asva_jax.pipeline.denoise")

B, F, H, W, C = 2, 3, 8, 8, 4
L, D_TEXT, T, D_AUDIO = 5, 24, 7, 16


class StandInUNet(nnx.Module):
  """A cheap ε-model with the UNet's call signature that reads every input (text, audio, mask, t)."""

  def __init__(self, seed=0):
    rng = np.random.default_rng(seed)
    self.w = nnx.Param(jnp.asarray(rng.standard_normal((C, C)) / 2, jnp.float32))
    self.text_w = nnx.Param(jnp.asarray(rng.standard_normal((D_TEXT, C)), jnp.float32))
    self.audio_w = nnx.Param(jnp.asarray(rng.standard_normal((D_AUDIO, C)), jnp.float32))

  def __call__(self, x, t, text, audio, mask):
    text = text if text.ndim == 4 else text[:, None]
    audio = audio if audio.ndim == 4 else audio[:, None]
    m = jnp.broadcast_to(mask, (x.shape[0], x.shape[1], audio.shape[-2]))[..., None]
    a = (jnp.broadcast_to(audio, m.shape[:3] + audio.shape[-1:]) * m).sum(2) / jnp.maximum(m.sum(2), 1)
    cond = text.mean(2) @ self.text_w[...] + a @ self.audio_w[...]
    cond = jnp.broadcast_to(cond, x.shape[:2] + (C,))[:, :, None, None]
    return jnp.tanh(x @ self.w[...] + cond) * (1 + jnp.asarray(t, jnp.float32) / 1000)


def conditions(seed=0, null_batch=1, per_frame=False):
  rng = np.random.default_rng(seed)
  r = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
  text = r(B, F, L, D_TEXT) if per_frame else r(B, L, D_TEXT)
  mask = rng.random((F, T)) < 0.6
  mask[:, 0] = True
  return dict(text=text, audio=r(B, T, D_AUDIO), audio_mask=mask, null_text=r(null_batch, L, D_TEXT),
              null_audio=r(null_batch, T, D_AUDIO), null_audio_mask=mask)


def initial_latents(seed=0):
  return np.random.default_rng(seed + 100).standard_normal((B, F, H, W, C)).astype(np.float32)


def reference(unet, latents, cond, s_a, s_t, n, scheduler, frames=F, prediction_type="epsilon", schedule=None,
              eta=0.0, noise=None, v_to_eps=False):
  """The original pipeline's loop, written in PyTorch around our (JAX) UNet. "plms" hands the
  scheduler a copy instead of the view the loop overwrites (diffusers' textbook PLMS); `noise(i)`
  (B, F-1, h, w, c) is the per-step noise of DDIM with `eta` > 0 and of DDPM; `v_to_eps` turns
  the guided output, a v, into ε = sqrt(ᾱ_t)·v + sqrt(1 − ᾱ_t)·x before the (ε-)scheduler's step."""
  cls = {"pndm": PNDMScheduler, "plms": PNDMScheduler, "ddim": DDIMScheduler, "ddpm": DDPMScheduler}[scheduler]
  sched = cls.from_config({**SD15_SCHEDULER, "prediction_type": prediction_type, **(schedule or {})})
  sched.set_timesteps(n)
  bcast = lambda x, b: np.broadcast_to(x, (b,) + x.shape[1:])  # noqa: E731
  text = cond["text"]
  b = latents.shape[0]
  null_text = bcast(cond["null_text"], b)
  if text.ndim == 4:
    null_text = np.repeat(null_text[:, None], frames, axis=1)
  audio, null_audio = cond["audio"], bcast(cond["null_audio"], b)
  tokens = audio.shape[-2]
  mask = np.broadcast_to(cond["audio_mask"], (b, frames, tokens))
  null_mask = np.broadcast_to(cond["null_audio_mask"], (b, frames, tokens))
  if s_t > 1 and s_a > 1:
    rows = [(null_text, null_audio, null_mask), (text, null_audio, null_mask), (text, audio, mask)]
  elif s_t > 1:
    rows = [(null_text, audio, mask), (text, audio, mask)]
  elif s_a > 1:
    rows = [(text, null_audio, null_mask), (text, audio, mask)]
  else:
    rows = [(text, audio, mask)]
  batch = [jnp.asarray(np.concatenate([r[k] for r in rows])) for k in range(3)]
  call = nnx.jit(lambda m, x, t, *c: m(x, t, *c))
  video = torch.from_numpy(latents.copy()).permute(0, 4, 1, 2, 3).contiguous()  # (B, C, F, H, W)
  for i, t in enumerate(sched.timesteps):
    model_in = torch.cat([video] * len(rows)).permute(0, 2, 3, 4, 1).numpy()
    eps = np.asarray(call(unet, jnp.asarray(model_in), jnp.int32(int(t)), *batch))
    eps = torch.from_numpy(eps.copy()).permute(0, 4, 1, 2, 3)
    if len(rows) == 3:
      uncond, text_only, full = eps.chunk(3)
      eps = uncond + s_t * (text_only - uncond) + s_a * (full - text_only)
    elif len(rows) == 2:
      base, full = eps.chunk(2)
      eps = base + (s_t if s_t > 1 else s_a) * (full - base)
    if v_to_eps:
      a = sched.alphas_cumprod[int(t)]
      eps = a ** 0.5 * eps + (1 - a) ** 0.5 * video
    z = None if noise is None else torch.from_numpy(np.array(noise(i))).permute(0, 4, 1, 2, 3)
    x = video[:, :, 1:].clone() if scheduler == "plms" else video[:, :, 1:]
    if scheduler == "ddim" and eta > 0:
      video[:, :, 1:] = sched.step(eps[:, :, 1:], t, x, eta=eta, variance_noise=z).prev_sample
    elif scheduler == "ddpm":
      with ddpm_noise(z):
        video[:, :, 1:] = sched.step(eps[:, :, 1:], t, x).prev_sample
    else:
      video[:, :, 1:] = sched.step(eps[:, :, 1:], t, x).prev_sample
  return video.permute(0, 2, 3, 4, 1).numpy()


@contextlib.contextmanager
def ddpm_noise(z):
  """DDPMScheduler.step draws its noise itself: serve it `z` instead (the step draws once, for t > 0)."""
  import diffusers.schedulers.scheduling_ddpm as ddpm_module
  original = ddpm_module.randn_tensor
  ddpm_module.randn_tensor = lambda shape, **kw: z.reshape(shape)
  try:
    yield
  finally:
    ddpm_module.randn_tensor = original


def rel(a, b):
  return float(np.abs(np.asarray(a) - b).max() / np.abs(b).max())


GUIDANCE = [(4.0, 1.0), (1.0, 3.0), (4.0, 2.5), (1.0, 1.0)]


@pytest.mark.parametrize("scheduler", ["pndm", "ddim"])
@pytest.mark.parametrize("s_a,s_t", GUIDANCE, ids=["audio", "text", "dual", "none"])
def test_denoise_equals_the_original_loop(scheduler, s_a, s_t):
  unet = StandInUNet()
  cond, latents = conditions(), initial_latents()
  ours = denoise(unet, latents, audio_guidance=s_a, text_guidance=s_t, num_inference_steps=5,
                 scheduler=scheduler, **cond)
  ref = reference(unet, latents, cond, s_a, s_t, 5, scheduler)
  assert rel(ours, ref) < 1e-5
  assert np.array_equal(np.asarray(ours)[:, 0], latents[:, 0])  # frame 0 is never updated


@pytest.mark.parametrize("s_a,s_t", [(4.0, 1.0), (4.0, 2.5)], ids=["audio", "dual"])
def test_v_prediction_equals_diffusers_ddim_with_v_prediction(s_a, s_t):
  """A v-model (the demo's) through `denoise`: the same as diffusers' DDIM with prediction_type
  "v_prediction"; read as ε, the same outputs give another result."""
  unet = StandInUNet(4)
  cond, latents = conditions(4), initial_latents(4)
  run = lambda p: np.asarray(denoise(unet, latents, audio_guidance=s_a, text_guidance=s_t,  # noqa: E731
                                     num_inference_steps=6, scheduler="ddim", prediction_type=p, **cond))
  ref = reference(unet, latents, cond, s_a, s_t, 6, "ddim", prediction_type="v_prediction")
  assert rel(run("v_prediction"), ref) < 1e-5
  assert rel(run("epsilon"), ref) > 1e-2
  with pytest.raises(ValueError, match="prediction_type"):
    run("sample")


def test_pndm_50_steps_with_warm_up_aliasing():
  unet = StandInUNet(1)
  cond, latents = conditions(1), initial_latents(1)
  ours = np.asarray(denoise(unet, latents, num_inference_steps=50, **cond))
  ref = reference(unet, latents, cond, 4.0, 1.0, 50, "pndm")
  assert rel(ours, ref) < 1e-5
  textbook = np.asarray(denoise(unet, latents, num_inference_steps=50, scheduler="plms", **cond))
  assert rel(textbook, ref) > 1e-4  # the aliasing matters


def test_real_unet_at_the_pipelines_shapes():
  """The tiny checkpoint's UNet at the shapes the pipeline tests use (one compilation serves both)."""
  from asva_jax import load_unet
  from asva_jax.audio import segment_masks
  from tests.sampling_checkpoint import AUDIO_DIM, TEXT_DIM, tiny_checkpoint
  unet = load_unet(tiny_checkpoint())
  rng = np.random.default_rng(5)
  r = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
  masks = segment_masks()
  cond = dict(text=r(1, 77, TEXT_DIM), audio=r(1, 229, AUDIO_DIM), audio_mask=masks,
              null_text=r(1, 77, TEXT_DIM), null_audio=r(1, 229, AUDIO_DIM), null_audio_mask=masks)
  latents = r(1, 12, 8, 8, 4)
  ours = denoise(unet, latents, audio_guidance=4.0, num_inference_steps=2, **cond)
  ref = reference(unet, latents, cond, 4.0, 1.0, 2, "pndm", frames=12)
  assert rel(ours, ref) < 1e-5


@pytest.mark.parametrize("scheduler", ["pndm", "ddpm"])
def test_loop_of_calls_equals_the_scan(scheduler):
  """The two loop structures (one program, or one jitted step per UNet call) compute the same."""
  unet, cond, latents = StandInUNet(4), conditions(4), initial_latents(4)
  run = lambda loop: np.asarray(denoise(unet, latents, audio_guidance=4.0, text_guidance=2.0,  # noqa: E731
                                        num_inference_steps=4, scheduler=scheduler, loop=loop,
                                        key=jax.random.key(1), **cond))
  scan = run("scan")
  assert rel(run("calls"), scan) < 1e-6
  assert rel(scan, latents) > 1e-2


def test_one_clip_per_unet_call_equals_the_whole_batch():
  """clips_per_call=1 (CPU's choice) regroups the branch-major batch clip by clip and back."""
  unet, cond, latents = StandInUNet(5), conditions(5, null_batch=B), initial_latents(5)
  run = lambda c: np.asarray(denoise(unet, latents, audio_guidance=4.0, text_guidance=2.0,  # noqa: E731
                                     num_inference_steps=3, clips_per_call=c, **cond))
  assert rel(run(1), run(None)) < 1e-6
  with pytest.raises(GuidanceError, match="clips_per_call"):
    run(3)


def test_scales_are_traced_and_null_conditions_broadcast():
  unet = StandInUNet(2)
  cond, latents = conditions(3), initial_latents(3)
  run = lambda s, c: denoise(unet, latents, audio_guidance=s, num_inference_steps=4, **c)  # noqa: E731
  a = run(4.0, cond)
  compiled = denoise_module._loop._cache_size()
  b = run(8.0, cond)
  assert denoise_module._loop._cache_size() == compiled
  assert rel(a, b) > 1e-3
  wide = dict(cond, null_audio=np.repeat(cond["null_audio"], B, 0), null_text=np.repeat(cond["null_text"], B, 0))
  assert np.array_equal(np.asarray(run(8.0, wide)), np.asarray(b))


def test_stochastic_samplers_need_a_key_and_are_reproducible():
  unet = StandInUNet()
  cond, latents = conditions(), initial_latents()
  with pytest.raises(ValueError, match="key"):
    denoise(unet, latents, scheduler="ddpm", num_inference_steps=3, **cond)
  key = jax.random.key(0)
  a = denoise(unet, latents, scheduler="ddpm", num_inference_steps=3, key=key, **cond)
  b = denoise(unet, latents, scheduler="ddpm", num_inference_steps=3, key=key, **cond)
  assert np.array_equal(np.asarray(a), np.asarray(b))


LINEAR = {"beta_schedule": "linear", "beta_start": 0.0001, "beta_end": 0.02}


@pytest.mark.parametrize("scheduler,schedule", [("pndm", None), ("plms", LINEAR)], ids=["pndm-sd15", "plms-linear"])
def test_v_prediction_plms_equals_diffusers_through_the_loop(scheduler, schedule):
  """PLMS on a v-model, 10 steps, both warm-ups: diffusers' PNDMScheduler(prediction_type="v_prediction")
  on the same schedule (SD1.5's by default; another one passed as alphas_cumprod builds the plan too)."""
  unet = StandInUNet(6)
  cond, latents = conditions(6), initial_latents(6)
  ref = reference(unet, latents, cond, 4.0, 1.0, 10, scheduler, prediction_type="v_prediction", schedule=schedule)
  alphas = None if schedule is None else PNDMScheduler.from_config({**SD15_SCHEDULER, **schedule}).alphas_cumprod
  alphas = None if alphas is None else alphas.numpy()
  run = lambda s: denoise(unet, latents, num_inference_steps=10, scheduler=s,  # noqa: E731
                          prediction_type="v_prediction", alphas_cumprod=alphas, **cond)
  assert rel(run(scheduler), ref) < 5e-5  # float32 round-off over 11 calls (ε: 1e-5 here)
  if schedule is None:  # "-eps": each v to ε first, then diffusers' ε-PLMS: another sampler
    eps_first = reference(unet, latents, cond, 4.0, 1.0, 10, scheduler, v_to_eps=True)
    assert rel(run(scheduler + "-eps"), eps_first) < 5e-5 and rel(eps_first, ref) > 1e-2


@pytest.mark.parametrize("scheduler,eta", [("ddim", 0.7), ("ddpm", 0.0)])
def test_stochastic_samplers_equal_diffusers_fed_the_same_noise_per_clip(scheduler, eta):
  """One key per clip: the loop equals diffusers' loop given the noise step_noise draws; a clip's result
  is the same alone or in a batch, at any position; other keys give other results."""
  unet = StandInUNet(7)
  cond, latents = conditions(7), initial_latents(7)
  keys = jnp.stack([jax.random.key(11), jax.random.key(12)])
  run = lambda lat, c, k: np.asarray(denoise(unet, lat, num_inference_steps=4, scheduler=scheduler,  # noqa: E731
                                             eta=eta, key=k, **c))
  ours = run(latents, cond, keys)
  noise = lambda i: denoise_module.step_noise(keys, i, (B, F - 1, H, W, C))  # noqa: E731
  assert rel(ours, reference(unet, latents, cond, 4.0, 1.0, 4, scheduler, eta=eta, noise=noise)) < 1e-5
  second = {k: v[1:] if k in ("text", "audio") else v for k, v in cond.items()}
  alone = run(latents[1:], second, keys[1:])
  np.testing.assert_allclose(alone[0], ours[1], rtol=0, atol=1e-5)
  swapped = {k: v[::-1] if k in ("text", "audio") else v for k, v in cond.items()}
  np.testing.assert_allclose(run(latents[::-1], swapped, keys[::-1])[::-1], ours, rtol=0, atol=1e-5)
  other = run(latents, cond, jnp.stack([jax.random.key(13), jax.random.key(12)]))
  assert rel(other[0], ours[0]) > 1e-2 and np.allclose(other[1], ours[1], rtol=0, atol=1e-5)
  with pytest.raises(ValueError, match="one per clip"):
    run(latents, cond, keys[:1])
