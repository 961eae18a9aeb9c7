"""Band-limited resampling, numerically the same as torchaudio's `functional.resample` defaults.

The original resamples every clip with torchaudio's windowed-sinc resampler (Hann window,
lowpass_filter_width 6, rolloff 0.99); torchaudio is not a dependency here, so this is
that algorithm in numpy: the rate ratio is reduced by the gcd to orig:new, and output
phase j of every block of `new` samples is a dot product of a fixed Hann-windowed sinc
kernel with the input around block position `orig`. The output has
ceil(len * new / orig) samples. Kernels are built in float64 and applied in float64
(torchaudio applies them in the waveform's dtype, float32: differences ~1e-7).
"""

from __future__ import annotations

import functools
import math

import numpy as np

LOWPASS_FILTER_WIDTH = 6
ROLLOFF = 0.99
_BLOCKS_PER_STEP = 4096


@functools.lru_cache(maxsize=16)
def sinc_resample_kernel(orig_freq: int, new_freq: int,
                         lowpass_filter_width: int = LOWPASS_FILTER_WIDTH,
                         rolloff: float = ROLLOFF) -> tuple[np.ndarray, int]:
  """((new, 2 * width + orig) float64 kernels, width) for the reduced rates orig:new."""
  base_freq = min(orig_freq, new_freq) * rolloff
  width = math.ceil(lowpass_filter_width * orig_freq / base_freq)
  idx = np.arange(-width, width + orig_freq, dtype=np.float64)[None, :] / orig_freq
  t = (-np.arange(new_freq, dtype=np.float64)[:, None] / new_freq + idx) * base_freq
  t = np.clip(t, -lowpass_filter_width, lowpass_filter_width)
  window = np.cos(t * math.pi / lowpass_filter_width / 2) ** 2
  t = t * math.pi
  safe_t = np.where(t == 0, 1.0, t)
  sinc = np.where(t == 0, 1.0, np.sin(safe_t) / safe_t)
  kernels = sinc * window * (base_freq / orig_freq)
  kernels.flags.writeable = False
  return kernels, width


def resample(waveform: np.ndarray, orig_freq: int, new_freq: int) -> np.ndarray:
  """Resamples the last axis of `waveform` from `orig_freq` to `new_freq` Hz (float32 out)."""
  x = np.asarray(waveform)
  if orig_freq <= 0 or new_freq <= 0:
    raise ValueError(f"resample: sample rates must be positive, got {orig_freq} -> {new_freq}")
  if orig_freq == new_freq:
    return x.astype(np.float32)
  g = math.gcd(int(orig_freq), int(new_freq))
  orig, new = int(orig_freq) // g, int(new_freq) // g
  kernels, width = sinc_resample_kernel(orig, new)
  lead = x.shape[:-1]
  if x.shape[-1] == 0:
    return np.zeros(lead + (0,), np.float32)
  x = x.reshape(-1, x.shape[-1]).astype(np.float64)
  length = x.shape[-1]
  padded = np.pad(x, ((0, 0), (width, width + orig)))
  windows = np.lib.stride_tricks.sliding_window_view(padded, kernels.shape[-1], axis=-1)[:, ::orig]
  out = np.empty(windows.shape[:2] + (new,), np.float64)
  for start in range(0, windows.shape[1], _BLOCKS_PER_STEP):  # bounds the copied windows' memory
    out[:, start:start + _BLOCKS_PER_STEP] = windows[:, start:start + _BLOCKS_PER_STEP] @ kernels.T
  out = out.reshape(x.shape[0], -1)
  target = math.ceil(new * length / orig)
  return out[:, :target].astype(np.float32).reshape(lead + (target,))
