"""`diffusion_loss` against a reference written out with diffusers (docs/reference.md §1.1, §6.2, §6.3).

The reference encodes the clip with diffusers' torch `AutoencoderKL` (same weights), samples its
posterior with the noise drawn from the loss's own latent key, noises with `DDPMScheduler.add_noise`,
takes ε or `DDPMScheduler.get_velocity` as the target, puts the clean frame 0 back, swaps in the null
audio for the clips whose dropout draw says so, and takes the MSE over frames 1..F-1. The UNet and the
audio encoder are stand-ins that record what they receive: the objective is under test, not them.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler

from asva_jax.models.vae import load_vae
from asva_jax.training.objective import diffusion_loss, draw_keys
from data_prep.latents import VaeMoments
from tests.reference_models import tiny_vae_checkpoint

B, F, H, W = 4, 3, 16, 24      # TINY_VAE downsamples by 4: 4 x 6 latents (not square)
LATENT = (B, F, H // 4, W // 4, 4)
MEL = (B, 6, 8)
SCALING = 0.18215
DROP = 0.3


def scheduler(prediction_type: str) -> DDPMScheduler:
  """SD1.5's training schedule (docs/reference.md §6.1)."""
  return DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                       beta_schedule="scaled_linear", prediction_type=prediction_type)


class RecordingUNet:
  """Stands in for the UNet: remembers its inputs; its output depends on every one of them, and
  on frame 0 too (so a loss that included frame 0 would change)."""

  def __call__(self, xt, t, text, audio, mask):
    self.inputs = dict(xt=xt, t=t, text=text, audio=audio, mask=mask)
    per_clip = lambda v: v.reshape(v.shape[0], *(1,) * 4)  # noqa: E731
    return (0.5 * jnp.tanh(xt) + per_clip(audio.mean((1, 2)) + 0.3 * text.mean((1, 2)) + 1e-3 * t)
            + 0.01 * mask.mean())


def audio_encoder(mel):
  """Stands in for ImageBind: tokens (B, 6, 8); the all-zero mel gives the distinct null tokens 0.5."""
  return jnp.tanh(mel) + 0.5


@pytest.fixture(scope="module")
def vaes(tmp_path_factory):
  """diffusers' VAE and the same weights in JAX (a checkpoint folder, as data_prep reads it)."""
  torch_vae, _, ckpt = tiny_vae_checkpoint(tmp_path_factory.mktemp("vae"), seed=3)
  return torch_vae, load_vae(ckpt), ckpt


@pytest.fixture(scope="module")
def batch():
  rng = np.random.default_rng(0)
  return dict(video=rng.integers(0, 256, (B, F, H, W, 3), dtype=np.uint8),
              mel=rng.normal(size=MEL).astype(np.float32),
              text=rng.normal(size=(B, 5, 8)).astype(np.float32),
              mask=rng.random((F, 6)) < 0.5)


def reference(torch_vae, batch, key, prediction_type):
  """The training step of docs/reference.md §1.1 written out with diffusers (channels-last outputs)."""
  keys = draw_keys(key)
  sched = scheduler(prediction_type)
  video = torch.from_numpy(batch["video"]).float().reshape(B * F, H, W, 3).permute(0, 3, 1, 2)
  with torch.no_grad():
    posterior = torch_vae.encode((video / 255 - 0.5) / 0.5).latent_dist  # logvar clamped to [-30, 20]
  eps_posterior = np.array(jax.random.normal(keys.latent, LATENT, jnp.float32))  # `sample_latent`'s draw
  eps_posterior = torch.from_numpy(eps_posterior).reshape(B * F, *LATENT[2:]).permute(0, 3, 1, 2)
  x0 = (posterior.mean + posterior.std * eps_posterior) * SCALING
  x0 = x0.permute(0, 2, 3, 1).reshape(LATENT)
  keep = np.asarray(jax.random.bernoulli(keys.audio_drop, 1 - DROP, (B,)))  # dropped with probability DROP
  t = torch.from_numpy(np.array(jax.random.randint(keys.timesteps, (B,), 0, 1000)))
  noise = torch.from_numpy(np.array(jax.random.normal(keys.noise, LATENT, jnp.float32)))
  xt = sched.add_noise(x0, noise, t)
  xt[:, 0] = x0[:, 0]
  target = noise if prediction_type == "epsilon" else sched.get_velocity(x0, noise, t)
  tokens, null = audio_encoder(batch["mel"]), audio_encoder(np.zeros(MEL[1:], np.float32))
  audio = np.where(keep[:, None, None], tokens, null[None])
  out = np.asarray(RecordingUNet()(jnp.asarray(xt.numpy()), jnp.asarray(t.numpy()), batch["text"], audio,
                                   batch["mask"]))
  loss = np.mean((out[:, 1:].astype(np.float64) - target[:, 1:].numpy()) ** 2)
  return dict(xt=xt.numpy(), t=t.numpy(), audio=audio, keep=keep, loss=loss, target=target.numpy())


def run_loss(vae, batch, key, prediction_type, **kw):
  unet = RecordingUNet()
  sched = scheduler(prediction_type)
  loss = diffusion_loss(unet, vae, audio_encoder, kw.pop("video", batch["video"]), batch["mel"], batch["text"],
                        batch["mask"], jnp.asarray(sched.alphas_cumprod.numpy()), key, scaling_factor=SCALING,
                        audio_drop_prob=DROP, prediction_type=prediction_type, **kw)
  return float(loss), {k: np.asarray(v) for k, v in unet.inputs.items()}


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_loss_equals_the_diffusers_reference(vaes, batch, prediction_type):
  torch_vae, vae, _ = vaes
  key = jax.random.key(2)
  ref = reference(torch_vae, batch, key, prediction_type)
  assert 0 < ref["keep"].sum() < B  # this key drops some clips' audio and keeps the others'
  loss, seen = run_loss(vae, batch, key, prediction_type)
  np.testing.assert_array_equal(seen["t"], ref["t"])
  np.testing.assert_allclose(seen["xt"], ref["xt"], rtol=1e-4, atol=1e-5)  # frame 0 clean, frames 1.. noised
  np.testing.assert_array_equal(seen["audio"], ref["audio"])  # the chosen clips' audio only
  np.testing.assert_array_equal(seen["text"], batch["text"])
  np.testing.assert_array_equal(seen["mask"], batch["mask"])
  assert loss == pytest.approx(ref["loss"], rel=1e-5)
  # The same output scored over every frame would differ: frame 0 is outside the loss.
  out = np.asarray(RecordingUNet()(seen["xt"], seen["t"], seen["text"], seen["audio"], seen["mask"]))
  assert abs(np.mean((out - ref["target"]) ** 2) - loss) > 1e-3 * loss


def test_cached_moments_give_the_encoders_posterior_sample(vaes, batch):
  """float16 moments written by data_prep (`VaeMoments`) in place of the encoder: the same x_t, from the
  same key, to float16 rounding."""
  torch_vae, vae, ckpt = vaes
  key = jax.random.key(7)
  cache = VaeMoments(str(ckpt), batch=F)
  moments = [cache(clip) for clip in batch["video"]]
  mean, logvar = (np.stack([m[k] for m in moments]) for k in ("vae_mean", "vae_logvar"))
  assert mean.dtype == np.float16
  loss, seen = run_loss(vae, batch, key, "epsilon", video=None, vae_moments=(mean, logvar))
  ref = reference(torch_vae, batch, key, "epsilon")
  np.testing.assert_allclose(seen["xt"], ref["xt"], rtol=2e-3, atol=2e-3 * SCALING)
  assert loss == pytest.approx(ref["loss"], rel=1e-3)


@pytest.mark.parametrize("drop", [0.2, 0.7])
def test_audio_is_dropped_with_the_configured_probability(drop):
  """Over many clips, the share that gets the null audio is `audio_drop_prob`, not 1 - it; t covers
  {0, ..., 999}; ε is standard normal."""
  n = 4000
  rng = np.random.default_rng(1)
  mel = rng.normal(size=(n, 6, 8)).astype(np.float32)
  moments = (np.zeros((n, 2, 1, 1, 4), np.float32), np.full((n, 2, 1, 1, 4), -60.0, np.float32))
  unet = RecordingUNet()
  diffusion_loss(unet, None, audio_encoder, None, mel, np.zeros((n, 1, 8), np.float32),
                 np.ones((2, 6), bool), jnp.asarray(scheduler("epsilon").alphas_cumprod.numpy()),
                 jax.random.key(11), audio_drop_prob=drop, vae_moments=moments)
  audio = np.asarray(unet.inputs["audio"])
  dropped = np.all(audio == 0.5, axis=(1, 2))
  np.testing.assert_array_equal(audio[~dropped], np.asarray(audio_encoder(mel))[~dropped])
  assert abs(dropped.mean() - drop) < 0.03  # 5 standard deviations
  t = np.asarray(unet.inputs["t"])
  assert t.min() >= 0 and t.max() <= 999 and t.min() < 10 and t.max() > 989
  assert abs(t.mean() - 499.5) < 15
  noise = np.asarray(unet.inputs["xt"])[:, 1]  # x0 = 0 here, so x_t = sqrt(1 - ᾱ_t) ε
  eps = noise / np.sqrt(1 - scheduler("epsilon").alphas_cumprod.numpy()[t]).reshape(-1, 1, 1, 1)
  assert abs(eps.mean()) < 0.03 and abs(eps.std() - 1) < 0.03
