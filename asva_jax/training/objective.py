"""AVSyncD's training objective (docs/reference.md §1.1, §6.2, §6.3) for one batch, as one jit-able function."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from asva_jax.constants import SD15_SCALING_FACTOR
from asva_jax.models.vae import sample_latent
from asva_jax.schedulers.noise_schedule import add_noise, training_target


def video_to_latents(vae, video: jax.Array, key: jax.Array, scaling_factor: float) -> jax.Array:
  """uint8 video (B, F, H, W, 3) -> scaled posterior samples (B, F, H/8, W/8, 4), as the original
  (a sample of the posterior, not its mean)."""
  images = video.astype(jnp.float32) / 127.5 - 1.0
  mean, logvar = vae.encode(images)
  return sample_latent(key, mean, logvar) * scaling_factor


class DrawKeys(NamedTuple):
  """The independent keys of one micro-batch's randomness, split from its one key (so a reference
  can draw the same posterior sample, dropout, timesteps and noise)."""
  latent: jax.Array      # the posterior sample of x0 (`sample_latent`)
  audio_drop: jax.Array  # keep the audio of each clip with probability 1 - audio_drop_prob
  timesteps: jax.Array   # t uniform in {0, ..., T - 1}, one per clip
  noise: jax.Array       # ε, x0's shape and dtype


def draw_keys(key: jax.Array) -> DrawKeys:
  return DrawKeys(*jax.random.split(key, 4))


def diffusion_loss(unet, vae, audio_encoder, video: jax.Array | None, mel: jax.Array, text: jax.Array,
                   audio_mask: jax.Array, alphas_cumprod: jax.Array, key: jax.Array, *,
                   scaling_factor: float = SD15_SCALING_FACTOR, audio_drop_prob: float = 0.2,
                   vae_moments: tuple[jax.Array, jax.Array] | None = None,
                   prediction_type: str = "epsilon", audio_keys: int | None = None) -> jax.Array:
  """ε-prediction MSE over frames 1..F-1, with frame 0 of x_t replaced by the clean latent
  (v-prediction MSE with `prediction_type="v_prediction"`, for models trained from scratch).

  video uint8 (B, F, H, W, 3); mel (B, 128, 204); text (B, N, D) per video;
  audio_mask (F, T) segment masks. Audio is replaced by the null audio (the
  encoder applied to an all-zero mel) with probability `audio_drop_prob` per sample.
  `vae_moments` (mean, logvar) (B, F, h, w, 4), cached by `data_prep.build --vae-latents`,
  replace the VAE encoder: the latent is then sampled from them (`video` may be None).
  audio_keys (static): the UNet's `audio_keys` for `audio_mask` (each frame attends to its own tokens
  only; `training.build.audio_keys_option`), None for the full masked attention: the same loss.
  The dropped clips' null audio takes the same masks, so the gathered form covers them too.
  """
  k_latent, k_drop, k_t, k_noise = draw_keys(key)
  b = mel.shape[0]
  if vae_moments is None:
    x0 = video_to_latents(vae, video, k_latent, scaling_factor)
  else:
    mean, logvar = (m.astype(jnp.float32) for m in vae_moments)
    x0 = sample_latent(k_latent, mean, logvar) * scaling_factor
  tokens = audio_encoder(mel)
  null_tokens = audio_encoder(jnp.zeros_like(mel[:1]))
  keep = jax.random.bernoulli(k_drop, 1.0 - audio_drop_prob, (b,))
  audio = jnp.where(keep[:, None, None], tokens, null_tokens)
  t = jax.random.randint(k_t, (b,), 0, alphas_cumprod.shape[0])
  noise = jax.random.normal(k_noise, x0.shape, x0.dtype)
  xt = add_noise(x0, noise, t, alphas_cumprod)
  xt = xt.at[:, 0].set(x0[:, 0])
  keys = {} if audio_keys is None else {"audio_keys": audio_keys}  # a UNet without the option still fits
  out = unet(xt, t, text, audio, audio_mask, **keys)
  target = training_target(x0, noise, t, alphas_cumprod, prediction_type)
  return jnp.mean(jnp.square(out[:, 1:].astype(jnp.float32) - target[:, 1:].astype(jnp.float32)))
