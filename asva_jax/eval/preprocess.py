"""The metrics' input preprocessing: each detector's input size and normalisation.

The original evaluation resizes float frames with torchvision `Resize(size, bicubic,
antialias=True)` (a centre crop to the same size follows and does nothing): `media.resize.resize`,
which rebuilds PyTorch's antialiased filter. Values are not clamped (bicubic overshoot stays).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from asva_jax.media.resize import resize

FID_SIZE = 229
FVD_SIZE = 224
CLIP_SIZE = 224
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _unit_range(frames) -> jax.Array:
  if jnp.issubdtype(jnp.asarray(frames).dtype, jnp.integer):
    raise ValueError("metric preprocessing takes float frames in [0, 1], not integer pixels (divide by 255)")
  return frames


def preprocess_fid(frames: jax.Array) -> jax.Array:
  """Frames (..., H, W, 3) in [0, 1] -> the FID Inception input (..., 229, 229, 3), x*2-1."""
  return resize(_unit_range(frames), (FID_SIZE, FID_SIZE)) * 2.0 - 1.0


def preprocess_fvd(video: jax.Array) -> jax.Array:
  """Clips (B, T, H, W, 3) in [0, 1] -> the I3D input (B, T, 224, 224, 3), x*2-1, not clamped."""
  return resize(_unit_range(video), (FVD_SIZE, FVD_SIZE)) * 2.0 - 1.0


def preprocess_clip(frames: jax.Array) -> jax.Array:
  """Frames (..., H, W, 3) in [0, 1] -> (..., 224, 224, 3) CLIP-normalised.

  The input of ImageBind's vision tower and of the AVSync classifier's video encoder.
  """
  x = resize(_unit_range(frames), (CLIP_SIZE, CLIP_SIZE))
  return (x - jnp.asarray(CLIP_MEAN, jnp.float32)) / jnp.asarray(CLIP_STD, jnp.float32)
