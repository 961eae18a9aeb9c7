"""ImageBind's audio input: a Kaldi log-mel filterbank of a 2-s clip, normalised (docs/reference.md §4.1).

Two paths that agree to ~1e-5:
  * numpy (`kaldi_fbank`, `waveform_to_mel`): any length, float64 inside, for data loading;
  * JAX (`kaldi_fbank_jax`, `waveform_to_mel_jax`): static shapes, float32, jit-able and
    batched, for on-device preprocessing.

Both reproduce `torchaudio.compliance.kaldi.fbank` with ImageBind's settings: 25 ms / 10 ms
frames with snip_edges, no dither, per-frame DC removal, pre-emphasis 0.97 (the first sample
against itself), a symmetric Hann window, a power spectrum zero-padded to a power of two,
a Kaldi mel filterbank from 20 Hz to Nyquist, and a log floored at float32 epsilon.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from asva_jax.constants import CLIP_SECONDS as CLIP_DURATION
from asva_jax.constants import SAMPLE_RATE

NUM_MEL_BINS = 128
TARGET_LEN = 204
MEL_MEAN = -4.268
MEL_STD = 9.138
LOW_FREQ = 20.0
PREEMPHASIS = 0.97
LOG_FLOOR = float(np.finfo(np.float32).eps)


def frame_geometry(sample_rate: int = SAMPLE_RATE) -> tuple[int, int, int]:
  """(window length, hop, FFT size) in samples: 25 ms, 10 ms, next power of two."""
  window = int(sample_rate * 0.025)
  hop = int(sample_rate * 0.010)
  n_fft = 1 << (window - 1).bit_length()
  return window, hop, n_fft


def num_frames(num_samples: int, sample_rate: int = SAMPLE_RATE) -> int:
  """Kaldi frame count with snip_edges: only whole windows."""
  window, hop, _ = frame_geometry(sample_rate)
  return 0 if num_samples < window else 1 + (num_samples - window) // hop


def kaldi_mel_scale(freq):
  return 1127.0 * np.log(1.0 + np.asarray(freq, np.float64) / 700.0)


@functools.lru_cache(maxsize=8)
def mel_filterbank(sample_rate: int = SAMPLE_RATE, num_mel_bins: int = NUM_MEL_BINS) -> np.ndarray:
  """Kaldi's triangular mel filters, (n_fft // 2 + 1, num_mel_bins) float64.

  Triangles are equally spaced on the Kaldi mel scale between 20 Hz and Nyquist; the
  Nyquist FFT bin gets no weight (as in Kaldi).
  """
  _, _, n_fft = frame_geometry(sample_rate)
  mel_low = kaldi_mel_scale(LOW_FREQ)
  mel_high = kaldi_mel_scale(sample_rate / 2)
  delta = (mel_high - mel_low) / (num_mel_bins + 1)
  edges = mel_low + delta * np.arange(num_mel_bins + 2)
  left, center, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
  mel = kaldi_mel_scale(np.arange(n_fft // 2) * (sample_rate / n_fft))[None, :]
  up = (mel - left) / (center - left)
  down = (right - mel) / (right - center)
  banks = np.maximum(0.0, np.minimum(up, down))
  banks = np.concatenate([banks, np.zeros((num_mel_bins, 1))], axis=1)
  banks.flags.writeable = False
  return banks.T


def hann_window(length: int) -> np.ndarray:
  """Symmetric Hann (Kaldi's "hanning"): 0.5 - 0.5 cos(2 pi n / (length - 1))."""
  return 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(length) / (length - 1))


def _frame_indices(n_frames: int, sample_rate: int) -> np.ndarray:
  window, hop, _ = frame_geometry(sample_rate)
  return hop * np.arange(n_frames)[:, None] + np.arange(window)[None, :]


def kaldi_fbank(waveform: np.ndarray, sample_rate: int = SAMPLE_RATE,
                num_mel_bins: int = NUM_MEL_BINS) -> np.ndarray:
  """Log mel filterbank (frames, num_mel_bins) float32 of a 1-D waveform (no mean removal here).

  A waveform shorter than one window has no frames: the result is (0, num_mel_bins).
  """
  x = np.asarray(waveform, np.float64)
  if x.ndim != 1:
    raise ValueError(f"kaldi_fbank: expected a 1-D waveform, got shape {x.shape}")
  n = num_frames(x.shape[0], sample_rate)
  window, _, n_fft = frame_geometry(sample_rate)
  if n == 0:
    return np.zeros((0, num_mel_bins), np.float32)
  frames = x[_frame_indices(n, sample_rate)]
  frames = frames - frames.mean(axis=1, keepdims=True)
  previous = np.concatenate([frames[:, :1], frames[:, :-1]], axis=1)
  frames = (frames - PREEMPHASIS * previous) * hann_window(window)
  power = np.abs(np.fft.rfft(frames, n=n_fft, axis=1)) ** 2
  energies = power @ mel_filterbank(sample_rate, num_mel_bins)
  return np.log(np.maximum(energies, LOG_FLOOR)).astype(np.float32)


def centre_crop(waveform: np.ndarray, length: int) -> np.ndarray:
  """The centred `length` samples of the last axis when longer; unchanged otherwise."""
  n = waveform.shape[-1]
  if n <= length:
    return waveform
  start = (n - length) // 2
  return waveform[..., start:start + length]


def pad_or_crop_frames(fbank: np.ndarray, target_len: int = TARGET_LEN) -> np.ndarray:
  """(frames, mels) -> (mels, target_len): transposed, zero-padded (log domain) or cropped."""
  fbank = fbank[:target_len]
  pad = target_len - fbank.shape[0]
  return np.pad(fbank, ((0, pad), (0, 0))).T


def normalize_mel(fbank):
  return (fbank - MEL_MEAN) / MEL_STD


def waveform_to_mel(waveform: np.ndarray, sample_rate: int = SAMPLE_RATE,
                    num_mel_bins: int = NUM_MEL_BINS, target_len: int = TARGET_LEN,
                    clip_duration: float = CLIP_DURATION) -> np.ndarray:
  """ImageBind's normalised log-mel (num_mel_bins, target_len) float32 of a waveform.

  `waveform` is (samples,) or (channels, samples) at `sample_rate`. Steps (docs/reference.md §4.1):
  centre crop to `clip_duration` when longer; subtract the mean over every channel and
  sample; channel 0 only; Kaldi fbank; zero-pad or crop to `target_len` frames; normalise
  with (-4.268, 9.138). A clip shorter than one 25-ms window has no frames and so gives
  the all-padding mel (the original code divides by zero there).
  """
  x = np.asarray(waveform, np.float64)
  if x.ndim == 1:
    x = x[None]
  if x.ndim != 2:
    raise ValueError(f"waveform_to_mel: expected (samples,) or (channels, samples), got {x.shape}")
  x = centre_crop(x, int(clip_duration * sample_rate))
  if x.size:
    x = x - x.mean()
  fbank = kaldi_fbank(x[0], sample_rate, num_mel_bins)
  return normalize_mel(pad_or_crop_frames(fbank, target_len)).astype(np.float32)


# --- JAX path -----------------------------------------------------------------

def kaldi_fbank_jax(waveform: jax.Array, sample_rate: int = SAMPLE_RATE,
                    num_mel_bins: int = NUM_MEL_BINS) -> jax.Array:
  """`kaldi_fbank` for (..., samples) float input with a static length: (..., frames, mels) float32."""
  x = jnp.asarray(waveform, jnp.float32)
  n = num_frames(x.shape[-1], sample_rate)
  window, _, n_fft = frame_geometry(sample_rate)
  if n == 0:
    return jnp.zeros(x.shape[:-1] + (0, num_mel_bins), jnp.float32)
  frames = x[..., _frame_indices(n, sample_rate)]
  frames = frames - frames.mean(axis=-1, keepdims=True)
  previous = jnp.concatenate([frames[..., :1], frames[..., :-1]], axis=-1)
  frames = (frames - PREEMPHASIS * previous) * jnp.asarray(hann_window(window), jnp.float32)
  spectrum = jnp.fft.rfft(frames, n=n_fft, axis=-1)
  power = jnp.square(spectrum.real) + jnp.square(spectrum.imag)
  banks = jnp.asarray(mel_filterbank(sample_rate, num_mel_bins), jnp.float32)
  energies = jnp.matmul(power, banks, precision=jax.lax.Precision.HIGHEST)
  return jnp.log(jnp.maximum(energies, LOG_FLOOR))


def waveform_to_mel_jax(waveform: jax.Array, sample_rate: int = SAMPLE_RATE,
                        num_mel_bins: int = NUM_MEL_BINS, target_len: int = TARGET_LEN,
                        clip_duration: float = CLIP_DURATION) -> jax.Array:
  """`waveform_to_mel` for mono (samples,) or batched (B, samples) input, jit-able.

  The length is static (e.g. 32000 for 2 s at 16 kHz); longer input is centre-cropped,
  shorter input padded in frames, exactly as the numpy path. The mean is removed per clip.
  Returns (num_mel_bins, target_len) or (B, num_mel_bins, target_len) float32.
  """
  x = jnp.asarray(waveform, jnp.float32)
  if x.ndim not in (1, 2):
    raise ValueError(f"waveform_to_mel_jax: expected (samples,) or (B, samples), got {x.shape}")
  x = centre_crop(x, int(clip_duration * sample_rate))
  x = x - x.mean(axis=-1, keepdims=True)
  fbank = kaldi_fbank_jax(x, sample_rate, num_mel_bins)[..., :target_len, :]
  pad = target_len - fbank.shape[-2]
  fbank = jnp.pad(fbank, [(0, 0)] * (fbank.ndim - 2) + [(0, pad), (0, 0)])
  return normalize_mel(jnp.swapaxes(fbank, -1, -2))
