"""Clips (first frame, 2-s audio, category) -> uint8 videos, in batches (docs/reference.md §1.2).

Per clip: the image -> [-1, 1] -> autoencoder posterior *sample* x scaling factor
(frame 0); N(0, I) noise for frames 1..F-1; ImageBind tokens of the audio's log-mel
and of the all-zero mel (the null audio); the category's text encoding and the null
text; `denoise`; all F frames decoded in batches; (x/2 + 0.5) clamped, x255, truncated.

Seeding: clip k of a call draws its initial noise, its posterior sample and (DDIM with
eta > 0, DDPM) its per-step noise from `seeds[k]` alone (one int for all: the original
re-seeds before every clip, so all clips of a run share their initial noise). A clip's
frames depend only on its inputs and seed, not on the batch it ran in or its position
(tests/test_pipeline.py: padded batches against batch 1, with DDIM eta > 0).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from asva_jax.pipeline.denoise import denoise
from asva_jax.pipeline.inputs import Clip, InputError
from asva_jax.pipeline.models import NULL_PROMPT, text_encoding
from asva_jax.schedulers import Plan, make_plan


@functools.partial(jax.jit, static_argnames=("graphdef", "method"))
def _apply(graphdef, state, *args, method: str):
  """`module.method(*args)` compiled once per module structure and shapes; weights are arguments,
  not constants baked into the program."""
  return getattr(nnx.merge(graphdef, state), method)(*args)


def call(module, method: str, *args):
  graphdef, state = nnx.split(module)
  return _apply(graphdef, state, *args, method=method)


def num_frames(models) -> int:
  return int(models.audio_encoder.config.n_segment)


def clip_keys(seed: int) -> tuple[jax.Array, jax.Array]:
  """(noise key, posterior key) of a clip."""
  k_noise, k_latent = jax.random.split(jax.random.key(seed))
  return k_noise, k_latent


def step_keys(seeds: Sequence[int]) -> jax.Array:
  """(B,) keys of the per-step noise of stochastic samplers, clip k's from seeds[k] alone."""
  return jnp.stack([jax.random.fold_in(jax.random.key(s), 1) for s in seeds])


def image_latents(models, images: np.ndarray, seeds: Sequence[int]) -> jax.Array:
  """uint8 (B, H, W, 3) -> scaled posterior samples (B, h, w, c), one key per image."""
  from asva_jax.models.vae import sample_latent
  x = jnp.asarray(images, jnp.float32) / 127.5 - 1.0
  mean, logvar = call(models.autoencoder, "encode", x)
  keys = jnp.stack([clip_keys(s)[1] for s in seeds])
  z = jax.vmap(lambda k, m, v: sample_latent(k, m, v))(keys, mean.astype(jnp.float32), logvar.astype(jnp.float32))
  return z * models.scaling_factor


def initial_noise(seeds: Sequence[int], shape: tuple[int, ...]) -> jax.Array:
  """(B, *shape) standard normal noise, clip k's from seeds[k]."""
  return jnp.stack([jax.random.normal(clip_keys(s)[0], shape, jnp.float32) for s in seeds])


def audio_tokens(models, audio: np.ndarray) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(tokens (B, T, D), null tokens (1, T, D), masks (F, T)) of 16-kHz windows (B, samples)."""
  from asva_jax.audio import waveform_to_mel
  mel = np.stack([waveform_to_mel(a) for a in np.asarray(audio)])
  tokens = call(models.audio_encoder, "__call__", jnp.asarray(mel))
  null = call(models.audio_encoder, "__call__", jnp.zeros((1,) + mel.shape[1:], jnp.float32))
  return tokens, null, jnp.asarray(models.audio_encoder.segment_masks())


def decode(models, latents: jax.Array, batch: int = 12) -> np.ndarray:
  """Scaled latents (B, F, h, w, c) -> uint8 frames (B, F, H, W, 3), `batch` frames per decoder call."""
  b, f = latents.shape[:2]
  flat = latents.reshape((b * f,) + latents.shape[2:]) / models.scaling_factor
  out = []
  for i in range(0, b * f, batch):
    chunk = flat[i:i + batch]
    pad = batch - chunk.shape[0]
    if pad:
      chunk = jnp.concatenate([chunk, jnp.repeat(chunk[-1:], pad, axis=0)])
    x = call(models.autoencoder, "decode", chunk).astype(jnp.float32)[:batch - pad]
    out.append(np.asarray((jnp.clip(x / 2 + 0.5, 0.0, 1.0) * 255).astype(jnp.uint8)))
  frames = np.concatenate(out)
  return frames.reshape((b, f) + frames.shape[1:])


def sample(models, clips: Sequence[Clip], *, seeds: int | Sequence[int] = 0, audio_guidance: float = 4.0,
           text_guidance: float = 1.0, num_inference_steps: int = 50, scheduler: str = "pndm",
           eta: float = 0.0, latents: np.ndarray | None = None, first_latents: np.ndarray | None = None,
           return_latents: bool = False):
  """Animates `clips` in one batched call: uint8 (B, F, H, W, 3) (and the final latents when
  `return_latents`).

  latents: initial noise (B, F-1, h, w, c) for frames 1..F-1 (or (B, F, ...), frame 0
  ignored), as diffusers' `latents=`; drawn from the seeds otherwise. first_latents:
  scaled frame-0 latents (B, h, w, c) to use instead of encoding the images (long-audio
  chaining hands over the previous window's last latent this way).
  """
  if not clips:
    raise InputError("no clips to sample")
  b, f = len(clips), num_frames(models)
  seeds = [int(seeds)] * b if np.ndim(seeds) == 0 else [int(s) for s in seeds]
  if len(seeds) != b:
    raise InputError(f"{len(seeds)} seeds for {b} clips")
  text = np.stack([text_encoding(models, c.prompt) for c in clips])  # unknown categories fail first
  null_text = text_encoding(models, NULL_PROMPT)[None]
  images = np.stack([c.image for c in clips])
  z0 = image_latents(models, images, seeds) if first_latents is None else jnp.asarray(first_latents, jnp.float32)
  if latents is None:
    noise = initial_noise(seeds, (f - 1,) + z0.shape[1:])
  else:
    noise = jnp.asarray(latents, jnp.float32)
    if noise.shape[1] == f:
      noise = noise[:, 1:]
    if noise.shape != (b, f - 1) + z0.shape[1:]:
      raise InputError(f"latents: expected shape {(b, f - 1) + tuple(z0.shape[1:])}, got {noise.shape}")
  x = jnp.concatenate([z0[:, None], noise], axis=1)  # init_noise_sigma is 1 for every sampler here
  tokens, null_tokens, masks = audio_tokens(models, np.stack([c.audio for c in clips]))
  key = step_keys(seeds)
  spec = models.spec  # the run's own schedule and prediction type (asva_jax.run_spec)
  alphas = spec.alphas_cumprod()
  plan = scheduler if isinstance(scheduler, Plan) else make_plan(
      scheduler, num_inference_steps, eta=eta, alphas_cumprod=alphas, prediction_type=spec.prediction_type)
  out = denoise(models.unet, x, text=text, audio=tokens, audio_mask=masks, null_text=null_text,
                null_audio=null_tokens, null_audio_mask=masks, audio_guidance=audio_guidance,
                text_guidance=text_guidance, num_inference_steps=num_inference_steps, scheduler=plan,
                eta=eta, key=key, prediction_type=spec.prediction_type, alphas_cumprod=alphas)
  frames = decode(models, out)
  return (frames, out) if return_latents else frames


def sample_batched(models, clips: Sequence[Clip], *, batch_size: int = 8, seeds: int | Sequence[int] = 0,
                   progress: bool = True, return_latents: bool = False, **options):
  """`sample` over `clips` in batches of `batch_size` (the last one padded, so every batch reuses
  one compilation), with a progress bar; clip k's result is its `sample` alone with seeds[k]."""
  from tqdm import tqdm
  n = len(clips)
  seeds = [int(seeds)] * n if np.ndim(seeds) == 0 else list(seeds)
  if len(seeds) != n:
    raise InputError(f"{len(seeds)} seeds for {n} clips")
  frames, latents = [], []
  for i in tqdm(range(0, n, batch_size), desc="sampling", unit="batch", disable=not progress or n <= batch_size):
    chunk, chunk_seeds = list(clips[i:i + batch_size]), seeds[i:i + batch_size]
    pad = batch_size - len(chunk) if n > batch_size else 0
    out = sample(models, chunk + [chunk[-1]] * pad, seeds=chunk_seeds + [chunk_seeds[-1]] * pad,
                 return_latents=True, **options)
    frames.append(out[0][:len(chunk)])
    latents.append(np.asarray(out[1][:len(chunk)]))
  frames = np.concatenate(frames)
  return (frames, np.concatenate(latents)) if return_latents else frames
