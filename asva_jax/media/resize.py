"""The one antialiased resize: PyTorch's `interpolate(..., antialias=True)` rebuilt without torch.

Two users. The original's data pipeline (docs/reference.md §8.3) crops to the target aspect
ratio and resizes uint8 frames bilinearly in [0, 1] (torchvision's `Resize(antialias=True)`;
PIL and jax.image differ, docs/reference.md §10 item 19): `crop_and_resize`, numpy. The
evaluation resizes float frames bicubically: `resize`, JAX.

With `antialias=True` PyTorch uses PIL's separable filter, whose support widens by the scale
factor when shrinking, clipped at the borders and renormalised there (no edge replication);
values are not clamped (bicubic overshoot stays). The weights depend only on the sizes, so each
axis is one small matrix. They are computed in float32 exactly as PyTorch's CPU kernel computes
them (`_compute_weights_aa` in aten/src/ATen/native/cpu/UpSampleKernel.cpp, with the fused
multiply-adds its compiler makes), so an impulse gives torch's weights bit for bit.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

_F32 = np.float32


def _fma(a, b, c) -> np.ndarray:
  """float32 a * b + c rounded once, as the compiled C++ contracts it (the float64 product of two
  float32s is exact)."""
  return (np.float64(a) * np.asarray(b, np.float64) + np.float64(c)).astype(_F32)


def _cubic(x: np.ndarray) -> np.ndarray:
  """Keys' cubic with a = -0.5 in float32, in the C++'s order of operations and contractions."""
  a = _F32(-0.5)
  x = np.abs(x).astype(_F32)
  near = _fma((_fma(a + _F32(2), x, -(a + _F32(3))) * x).astype(_F32), x, _F32(1))
  far = _fma(_fma(_fma(a, x, -_F32(5) * a), x, _F32(8) * a), x, -_F32(4) * a)
  return np.where(x < 1, near, np.where(x < 2, far, _F32(0))).astype(_F32)


def _triangle(x: np.ndarray) -> np.ndarray:
  return np.where(x < 1, (1.0 - x.astype(np.float64)).astype(_F32), _F32(0))


_FILTERS = {"bicubic": (_cubic, 2.0), "bilinear": (_triangle, 1.0)}


def aspect_crop_box(height: int, width: int, target: tuple[int, int]) -> tuple[int, int, int, int]:
  """(top, left, height, width) of the centred crop with the target's aspect ratio.

  Integer arithmetic as the original: trim the width when the source is wider
  than the target, else the height.
  """
  target_h, target_w = target
  target_ratio = float(target_h) / target_w
  if target_ratio >= float(height) / width:
    trimmed = int(height / target_ratio)
    return 0, (width - trimmed) // 2, height, trimmed
  trimmed = int(width * target_ratio)
  return (height - trimmed) // 2, 0, trimmed, width


@functools.lru_cache(maxsize=64)
def _taps(in_size: int, out_size: int, method: str) -> tuple[np.ndarray, np.ndarray]:
  """(out_size,) first input index and (out_size, K) float32 weights of each output sample."""
  if method not in _FILTERS:
    raise ValueError(f"resize method {method!r}: use one of {sorted(_FILTERS)}")
  kernel, half_width = _FILTERS[method]
  # Types as the C++: scale, support, centre, invscale and the weights are float; the
  # `+ 0.5`s are double, and the casts to int64 truncate.
  scale = _F32(in_size) / _F32(out_size)
  support = _F32(half_width * scale) if scale >= 1 else _F32(half_width)
  invscale = _F32(1.0 / float(scale)) if scale >= 1 else _F32(1)
  i = np.arange(out_size)
  center = (float(scale) * (i + 0.5)).astype(_F32)
  lo = np.maximum((center - support).astype(np.float64) + 0.5, 0).astype(np.int64)
  hi = np.minimum(((center + support).astype(np.float64) + 0.5).astype(np.int64), in_size)
  width = int((hi - lo).max())
  j = np.arange(width)
  pos = (lo[:, None] + j[None, :]).astype(_F32)
  x = (((pos - center[:, None]).astype(np.float64) + 0.5) * float(invscale)).astype(_F32)
  w = np.where(j[None, :] < (hi - lo)[:, None], kernel(np.abs(x)), _F32(0)).astype(_F32)
  total = np.zeros(out_size, _F32)
  for k in range(width):  # sequential float32 sum, as the C++ loop
    total = (total + w[:, k]).astype(_F32)
  w = np.where(total[:, None] != 0, w / np.where(total == 0, _F32(1), total)[:, None], w).astype(_F32)
  return lo, w


@functools.lru_cache(maxsize=64)
def resize_weights(in_size: int, out_size: int, method: str = "bicubic") -> np.ndarray:
  """(out_size, in_size) float32 matrix of PyTorch's antialiased interpolation along one axis."""
  lo, w = _taps(in_size, out_size, method)
  out = np.zeros((out_size, in_size), _F32)
  for k in range(w.shape[1]):
    idx = lo + k
    ok = idx < in_size
    out[np.arange(out_size)[ok], idx[ok]] = w[ok, k]
  return out


def resize(x: jax.Array, size: tuple[int, int], method: str = "bicubic") -> jax.Array:
  """Antialiased resize of channels-last images (..., H, W, C) to `size` = (height, width).

  Equals `torch.nn.functional.interpolate(x, size, mode=method, antialias=True)` on the
  channels-first tensor to float32 rounding (width first, then height, as PyTorch does).
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


def _resize_axis(x: np.ndarray, out_size: int, axis: int) -> np.ndarray:
  """float32 bilinear antialiased resize of one axis, taps accumulated in order with one rounding
  each (a fused multiply-add, as PyTorch's compiled `out += t * w`)."""
  lo, w = _taps(x.shape[axis], out_size, "bilinear")
  out = np.zeros(x.shape[:axis] + (out_size,) + x.shape[axis + 1:], _F32)
  shape = [1] * x.ndim
  shape[axis] = out_size
  for k in range(w.shape[1]):
    idx = np.minimum(lo + k, x.shape[axis] - 1)  # past the window the weight is 0: adds exactly 0
    out = _fma(w[:, k].reshape(shape), np.take(x, idx, axis=axis), out)
  return out


def crop_and_resize(frames: np.ndarray, target: tuple[int, int], chunk: int = 32, *,
                    truncate: bool = False) -> np.ndarray:
  """(T, H, W, 3) uint8 -> (T, target_h, target_w, 3) uint8: the original's aspect crop, then the
  antialiased bilinear resize in [0, 1], rounded half to even from the float result, or
  truncated as torchvision's `to_pil_image` quantises the original's conditioning image.

  Pixel-identical to the torch resize it replaces for sizes within ~2x of the target; at
  downscales of 2.5x or more along an axis, float32 rounding differs from torch's compiled kernel
  in at most one level on a few pixels in 10,000 (tests/test_media_resize.py).
  """
  del chunk  # frame by frame keeps the float64 temporaries small for any video length
  frames = np.asarray(frames)
  top, left, h, w = aspect_crop_box(frames.shape[1], frames.shape[2], target)
  out = np.empty((frames.shape[0],) + tuple(target) + (3,), np.uint8)
  for i, frame in enumerate(frames):
    x = frame[top:top + h, left:left + w].astype(_F32) / _F32(255)
    if w != target[1]:
      x = _resize_axis(x, target[1], axis=1)
    if h != target[0]:
      x = _resize_axis(x, target[0], axis=0)
    y = np.clip(x, _F32(0), _F32(1)) * _F32(255)
    out[i] = y if truncate else np.round(y)
  return out
