"""torchvision's antialiased resize, channels-last, and the metrics' input preprocessing.

The original evaluation resizes float frames with torchvision
`Resize(size, bicubic, antialias=True)` (a centre crop to the same size follows
and does nothing). With `antialias=True` PyTorch uses PIL's separable filter:
a cubic with a = -0.5 (not the -0.75 of plain bicubic) whose support widens by
the scale factor when shrinking, clipped at the borders and renormalised
there (no edge replication). The weights depend only on the sizes, so each axis
is one small matrix product; values are not clamped (bicubic overshoot stays).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

FID_SIZE = 229
FVD_SIZE = 224
CLIP_SIZE = 224
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _cubic(x: np.ndarray, a: float = -0.5) -> np.ndarray:
  x = np.abs(x)
  near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
  far = (((x - 5.0) * x + 8.0) * x - 4.0) * a
  return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


def _triangle(x: np.ndarray) -> np.ndarray:
  return np.maximum(0.0, 1.0 - np.abs(x))


_FILTERS = {"bicubic": (_cubic, 2.0), "bilinear": (_triangle, 1.0)}


@functools.lru_cache(maxsize=64)
def resize_weights(in_size: int, out_size: int, method: str = "bicubic") -> np.ndarray:
  """(out_size, in_size) float32 matrix of PyTorch's antialiased interpolation along one axis."""
  if method not in _FILTERS:
    raise ValueError(f"resize method {method!r}: use one of {sorted(_FILTERS)}")
  kernel, half_width = _FILTERS[method]
  # PyTorch holds the scale and each window centre in float32; the rounding of the
  # centre grows with the index and shows at 1e-5 if done in float64 here.
  scale = np.float32(in_size) / np.float32(out_size)
  support = half_width * max(float(scale), 1.0)
  invscale = 1.0 / float(scale) if scale >= 1.0 else 1.0
  weights = np.zeros((out_size, in_size), np.float64)
  for i in range(out_size):
    center = float(np.float32(float(scale) * (i + 0.5)))
    # int() truncates like the C++ cast; both bounds are clipped to the input.
    lo = max(int(center - support + 0.5), 0)
    hi = min(int(center + support + 0.5), in_size)
    w = kernel((np.arange(lo, hi) - center + 0.5) * invscale)
    total = w.sum()
    weights[i, lo:hi] = w / total if total != 0 else w
  return weights.astype(np.float32)


def resize(x: jax.Array, size: tuple[int, int], method: str = "bicubic") -> jax.Array:
  """Antialiased resize of channels-last images (..., H, W, C) to `size` = (height, width).

  Equals `torch.nn.functional.interpolate(x, size, mode=method, antialias=True)` on the
  channels-first tensor, float32 (width first, then height, as PyTorch does).
  """
  x = jnp.asarray(x, jnp.float32)
  height, width = x.shape[-3], x.shape[-2]
  out_h, out_w = size
  hp = jax.lax.Precision.HIGHEST
  if width != out_w:
    x = jnp.einsum("...wc,ow->...oc", x, resize_weights(width, out_w, method), precision=hp)
  if height != out_h:
    x = jnp.einsum("...hwc,oh->...owc", x, resize_weights(height, out_h, method), precision=hp)
  return x


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
