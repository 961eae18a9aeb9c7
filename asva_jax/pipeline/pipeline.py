"""Clips (first frame, 2-s audio, category) -> uint8 videos, in batches (docs/reference.md §1.2).

Per clip: the image -> [-1, 1] -> autoencoder posterior *sample* x scaling factor
(frame 0); N(0, I) noise for frames 1..F-1; ImageBind tokens of the audio's log-mel
and of the all-zero mel (the null audio); the category's text encoding and the null
text; `denoise`; all F frames decoded in batches; (x/2 + 0.5) clamped, x255, truncated.

Seeding: clip k of a call draws its initial noise, its posterior sample and (DDIM with
eta > 0, DDPM) its per-step noise from `seeds[k]` alone (one int for all: the original
re-seeds before every clip, so all clips of a run share their initial noise). A clip's
frames depend only on its inputs and seed, not on the batch it ran in, its position or the
devices it ran on (tests/test_pipeline.py: padded batches against batch 1, with DDIM eta > 0;
tests/test_data_parallel.py: the same over 8 devices).

Devices: `sample_batched` splits every call's clips over this process's devices (`data` axis of
`parallel.sharding.data_mesh`) with the weights replicated; several hosts each sample their
own share (`pipeline.jobs.run_jobs`), so no computation spans hosts.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from asva_jax.constants import NULL_PROMPT
from asva_jax.pipeline.denoise import denoise
from asva_jax.pipeline.inputs import Clip, InputError
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


def image_latents(models, images, seeds: Sequence[int], place=jnp.asarray) -> jax.Array:
  """uint8 (B, H, W, 3) -> scaled posterior samples (B, h, w, c), one key per image; `place` puts
  the batch where it runs (split over the devices by `sample`'s mesh)."""
  from asva_jax.models.vae import sample_latent
  x = place(np.asarray(images, np.float32)) / 127.5 - 1.0
  mean, logvar = call(models.autoencoder, "encode", x)
  keys = place(jnp.stack([clip_keys(s)[1] for s in seeds]))
  z = jax.vmap(lambda k, m, v: sample_latent(k, m, v))(keys, mean.astype(jnp.float32), logvar.astype(jnp.float32))
  return z * models.scaling_factor


def initial_noise(seeds: Sequence[int], shape: tuple[int, ...]) -> jax.Array:
  """(B, *shape) standard normal noise, clip k's from seeds[k]."""
  return jnp.stack([jax.random.normal(clip_keys(s)[0], shape, jnp.float32) for s in seeds])


def audio_tokens(models, audio: np.ndarray, place=jnp.asarray) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(tokens (B, T, D), null tokens (1, T, D), masks (F, T)) of 16-kHz windows (B, samples)."""
  from asva_jax.audio import waveform_to_mel
  mel = np.stack([waveform_to_mel(a) for a in np.asarray(audio)])
  tokens = call(models.audio_encoder, "__call__", place(mel))
  null = call(models.audio_encoder, "__call__", jnp.zeros((1,) + mel.shape[1:], jnp.float32))
  return tokens, null, jnp.asarray(models.audio_encoder.segment_masks())


def decode(models, latents: jax.Array, batch: int = 12) -> np.ndarray:
  """Scaled latents (B, F, h, w, c) -> uint8 frames (B, F, H, W, 3), about `batch` frames per decoder
  call: the same max(1, batch // B) frames of every clip together, so that a batch split over
  devices stays split (each device decodes its own clips)."""
  b, f = latents.shape[:2]
  k = min(f, max(1, batch // b))
  out = []
  for j in range(0, f, k):
    chunk = latents[:, j:j + k]
    pad = k - chunk.shape[1]
    if pad:
      chunk = jnp.concatenate([chunk, jnp.repeat(chunk[:, -1:], pad, axis=1)], axis=1)
    x = call(models.autoencoder, "decode", chunk.reshape((b * k,) + chunk.shape[2:]) / models.scaling_factor)
    x = np.asarray((jnp.clip(x.astype(jnp.float32) / 2 + 0.5, 0.0, 1.0) * 255).astype(jnp.uint8))
    out.append(x.reshape((b, k) + x.shape[1:])[:, :k - pad])
  return np.concatenate(out, axis=1)


def _repeat_last(x, n: int):
  """`x` (rows first) padded to `n` rows by repeating its last row."""
  x = np.asarray(x)
  return np.concatenate([x, np.repeat(x[-1:], n - len(x), axis=0)]) if n > len(x) else x


def sample(models, clips: Sequence[Clip], *, seeds: int | Sequence[int] = 0, audio_guidance: float = 4.0,
           text_guidance: float = 1.0, num_inference_steps: int = 50, scheduler: str = "pndm",
           eta: float = 0.0, latents: np.ndarray | None = None, first_latents: np.ndarray | None = None,
           return_latents: bool = False, mesh=None):
  """Animates `clips` in one batched call: uint8 (B, F, H, W, 3) (and the final latents when
  `return_latents`).

  latents: initial noise (B, F-1, h, w, c) for frames 1..F-1 (or (B, F, ...), frame 0
  ignored), as diffusers' `latents=`; drawn from the seeds otherwise. first_latents:
  scaled frame-0 latents (B, h, w, c) to use instead of encoding the images (long-audio
  chaining hands over the previous window's last latent this way).
  mesh: a `parallel.sharding.data_mesh`: the clips are split over its devices (padded to a
  multiple of them by repeating the last clip) and the weights replicated on it, in place.
  """
  if not clips:
    raise InputError("no clips to sample")
  n, f = len(clips), num_frames(models)
  seeds = [int(seeds)] * n if np.ndim(seeds) == 0 else [int(s) for s in seeds]
  if len(seeds) != n:
    raise InputError(f"{len(seeds)} seeds for {n} clips")
  place = jnp.asarray
  if mesh is not None:
    from asva_jax.parallel import sharding
    for module in (models.unet, models.autoencoder, models.audio_encoder):
      sharding.replicate(module, mesh)
    b = sharding.padded_size(n, mesh)
    clips, seeds = list(clips) + [clips[-1]] * (b - n), seeds + [seeds[-1]] * (b - n)
    place = functools.partial(sharding.on_batch, mesh=mesh)
  text = place(np.stack([models.text_encodings[c.prompt] for c in clips]))  # unknown categories fail first
  null_text = models.text_encodings[NULL_PROMPT][None]
  images = np.stack([c.image for c in clips])
  z0 = (image_latents(models, images, seeds, place) if first_latents is None
        else place(_repeat_last(np.asarray(first_latents, np.float32), len(clips))))
  if latents is None:
    noise = place(initial_noise(seeds, (f - 1,) + z0.shape[1:]))
  else:
    noise = np.asarray(latents, np.float32)
    if noise.ndim == 5 and noise.shape[1] == f:
      noise = noise[:, 1:]
    if noise.shape != (n, f - 1) + z0.shape[1:]:
      raise InputError(f"latents: expected shape {(n, f - 1) + tuple(z0.shape[1:])}, got {noise.shape}")
    noise = place(_repeat_last(noise, len(clips)))
  x = jnp.concatenate([z0[:, None], noise], axis=1)  # init_noise_sigma is 1 for every sampler here
  tokens, null_tokens, masks = audio_tokens(models, np.stack([c.audio for c in clips]), place)
  key = place(step_keys(seeds))
  spec = models.spec  # the run's own schedule and prediction type (asva_jax.run_spec)
  alphas = spec.alphas_cumprod()
  plan = scheduler if isinstance(scheduler, Plan) else make_plan(
      scheduler, num_inference_steps, eta=eta, alphas_cumprod=alphas, prediction_type=spec.prediction_type)
  out = denoise(models.unet, x, text=text, audio=tokens, audio_mask=masks, null_text=null_text,
                null_audio=null_tokens, null_audio_mask=masks, audio_guidance=audio_guidance,
                text_guidance=text_guidance, num_inference_steps=num_inference_steps, scheduler=plan,
                eta=eta, key=key, prediction_type=spec.prediction_type, alphas_cumprod=alphas)
  frames = decode(models, out)[:n]
  return (frames, out[:n]) if return_latents else frames


def sample_batched(models, clips: Sequence[Clip], *, batch_size: int = 8, seeds: int | Sequence[int] = 0,
                   progress: bool = True, return_latents: bool = False, mesh=None, **options):
  """`sample` over `clips` in calls of `batch_size` clips (rounded up to a multiple of the devices;
  the last call padded, so every call reuses one compilation), with a progress bar; clip k's result
  is its `sample` alone with seeds[k], on one device.

  mesh: the devices to split every call over (`parallel.sharding.data_mesh`); by default all of this
  process's devices. Several hosts each call this with their own share of the clips.
  """
  from tqdm import tqdm
  from asva_jax.parallel import sharding
  mesh = sharding.data_mesh() if mesh is None else mesh
  n = len(clips)
  seeds = [int(seeds)] * n if np.ndim(seeds) == 0 else list(seeds)
  if len(seeds) != n:
    raise InputError(f"{len(seeds)} seeds for {n} clips")
  per_call = sharding.padded_size(max(int(batch_size), 1), mesh)
  frames, latents = [], []
  for i in tqdm(range(0, n, per_call), desc="sampling", unit="batch", disable=not progress or n <= per_call):
    chunk, chunk_seeds = list(clips[i:i + per_call]), seeds[i:i + per_call]
    pad = per_call - len(chunk) if n > per_call else 0
    out = sample(models, chunk + [chunk[-1]] * pad, seeds=chunk_seeds + [chunk_seeds[-1]] * pad,
                 return_latents=True, mesh=mesh, **options)
    frames.append(out[0][:len(chunk)])
    latents.append(np.asarray(out[1][:len(chunk)]))
  frames = np.concatenate(frames)
  return (frames, np.concatenate(latents)) if return_latents else frames
