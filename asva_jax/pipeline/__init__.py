"""Sampling AVSyncD: the jitted denoising loop, guidance, and the image + audio -> video pipeline.

  denoise(unet, latents, *, text, audio, audio_mask, null_text, null_audio, null_audio_mask, ...)
  load_models(path, step=None, *, dtype)          checkpoint folder or training workdir -> bundle
  sample(models, clips, ...)                      Clips -> uint8 videos (B, F, H, W, 3)
  long_audio.animate(models, image, audio, ...)   a whole long audio, window after window
"""

from asva_jax.pipeline.inputs import Clip, InputError
from asva_jax.pipeline.denoise import denoise, step_noise
from asva_jax.pipeline.models import Models, UnknownCategoryError, load_models
from asva_jax.pipeline.pipeline import sample, sample_batched

__all__ = ["Clip", "InputError", "Models", "UnknownCategoryError", "denoise", "load_models", "sample",
           "sample_batched", "step_noise"]
