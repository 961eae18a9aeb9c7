"""Two audio-visual synchronisation measures that need no pretrained network (pure functions).

    python -m asva_jax.eval.sync VIDEO... [--max_lag 1.0] [--json OUT]

**Event-timing error** (synthetic data, where the audio event times are known). The
*change energy* of frame j >= 1 is the mean absolute difference of its pixels to frame
j - 1 (0-255 scale). A *motion event* is a rising local maximum of it: a frame j whose
energy is strictly above that of frame j - 1 (frame 0 counts as 0) and at least that of
frame j + 1 (the frame after the last counts as 0); where a change lasts two frames with
equal energy (an object that moves and comes back), the first, the onset, is the event.
Given K, the K strongest such frames are the detections (K = the number of true events,
so that a video with more or fewer changes is neither rewarded nor excused). The error
is the mean, over detections, of the distance in frames to the nearest true event frame,
where an audio event at time τ is at the first frame shown at or after τ. Frame 0 is the
conditioning image, so only events at frames 1..F-1 count. A video without any rising
change counts as the worst case, F - 1 frames.

**Onset alignment** (any video with sound). The audio onset envelope is librosa's onset
strength (spectral flux of a log-mel spectrogram, 32-ms windows every 10 ms), averaged over
each frame interval (t_{j-1}, t_j] so that it sits on the frame grid; the motion envelope is the change energy
of the same frames (frame j - 1 -> j). Both are compared by Pearson correlation at lag 0
and at every lag within ±`max_lag_seconds`; lag L pairs audio frame j + L with motion
frame j, so a positive best lag means the sound comes L frames after the motion.
"""

from __future__ import annotations

import dataclasses

import numpy as np

ONSET_HOP_SECONDS = 0.01
# A 32-ms window (librosa's default is 128 ms at 16 kHz) times an onset within a 25-fps frame.
ONSET_WINDOW_SECONDS = 0.032
ONSET_MELS = 64


def change_energy(frames: np.ndarray) -> np.ndarray:
  """(F, H, W, C) frames -> (F,) mean |frame j - frame j-1| per frame; entry 0 is 0."""
  x = np.asarray(frames, np.float32)
  if x.ndim != 4 or len(x) < 2:
    raise ValueError(f"change_energy: need (F >= 2, H, W, C) frames, got shape {x.shape}")
  energy = np.abs(np.diff(x, axis=0)).mean(axis=(1, 2, 3))
  return np.concatenate([[0.0], energy]).astype(np.float64)


def motion_events(energy: np.ndarray, num_events: int) -> np.ndarray:
  """Frames (ascending) of the `num_events` strongest rising local maxima of `energy` (F,)."""
  e = np.asarray(energy, np.float64)
  prev = np.concatenate([[0.0], e[:-1]])
  nxt = np.concatenate([e[1:], [0.0]])
  peaks = np.flatnonzero((e > prev) & (e >= nxt))
  peaks = peaks[peaks >= 1]
  strongest = peaks[np.argsort(-e[peaks], kind="stable")][:max(num_events, 0)]
  return np.sort(strongest)


def event_frames(event_times, frame_times) -> np.ndarray:
  """The frame (index into `frame_times`) at which each event is first visible: the first frame
  shown at or after it. Events before frame 1 (frame 0 is given) or after the last frame drop out."""
  times = np.asarray(frame_times, np.float64)
  events = np.asarray(event_times, np.float64)
  index = np.searchsorted(times, events - 1e-9, side="left")
  keep = (index >= 1) & (index < len(times))
  return np.unique(index[keep])


def timing_error(detected: np.ndarray, true_frames: np.ndarray, num_frames: int) -> float:
  """Mean |detected - nearest true frame|; num_frames - 1 when nothing was detected, NaN
  when there is no true event to compare with."""
  true_frames = np.asarray(true_frames)
  if true_frames.size == 0:
    return float("nan")
  detected = np.asarray(detected)
  if detected.size == 0:
    return float(num_frames - 1)
  return float(np.abs(detected[:, None] - true_frames[None, :]).min(axis=1).mean())


def event_timing_error(frames: np.ndarray, true_frames) -> float:
  """The event-timing error (module docstring) of a video (F, H, W, C) against the frames
  of its true audio events (`event_frames`)."""
  true_frames = np.asarray(true_frames, np.int64)
  detected = motion_events(change_energy(frames), len(true_frames))
  return timing_error(detected, true_frames, len(frames))


def onset_envelope(audio: np.ndarray, sample_rate: int, frame_times, audio_start: float = 0.0) -> np.ndarray:
  """librosa's onset strength of mono `audio` (its first sample at `audio_start` s), averaged
  over each frame interval (t_{j-1}, t_j] (frame 0: the interval of the same length before it)."""
  import librosa
  audio = np.asarray(audio, np.float32)
  times = np.asarray(frame_times, np.float64)
  hop = max(1, int(round(ONSET_HOP_SECONDS * sample_rate)))
  n_fft = 1 << int(np.ceil(np.log2(ONSET_WINDOW_SECONDS * sample_rate)))
  strength = librosa.onset.onset_strength(y=audio, sr=sample_rate, hop_length=hop, n_fft=n_fft,
                                          n_mels=ONSET_MELS)
  # Sample m is the flux from the STFT window centred at (m-1)·hop to the one at m·hop: the change
  # began after (m-1)·hop, which is its time stamp (so a sound at a frame's time stays in that frame).
  t_env = audio_start + (np.arange(len(strength)) - 1) * hop / sample_rate
  step = np.diff(times).mean() if len(times) > 1 else 1.0
  lows = np.concatenate([[times[0] - step], times[:-1]])
  out = np.zeros(len(times))
  for j, (lo, hi) in enumerate(zip(lows, times)):
    inside = (t_env > lo) & (t_env <= hi)
    out[j] = strength[inside].mean() if inside.any() else 0.0
  return out


def lagged_correlation(audio_env: np.ndarray, motion_env: np.ndarray, lag: int) -> float:
  """Pearson correlation of audio frame j + lag with motion frame j over the overlap; NaN when the
  overlap is shorter than 3 frames or either side is constant there."""
  a = np.asarray(audio_env, np.float64)
  m = np.asarray(motion_env, np.float64)
  n = min(len(a), len(m))
  a, m = (a[lag:n], m[:n - lag]) if lag >= 0 else (a[:n + lag], m[-lag:n])
  if len(a) < 3 or a.std() == 0 or m.std() == 0:
    return float("nan")
  return float(np.corrcoef(a, m)[0, 1])


@dataclasses.dataclass(frozen=True)
class Alignment:
  """Onset alignment of one video: correlation at lag 0, and the best lag (frames and seconds)
  within the searched range with its correlation."""
  lag0: float
  best_lag: int
  best_lag_seconds: float
  best: float

  def to_dict(self) -> dict:
    """Plain floats for JSON; None where undefined (NaN)."""
    return {k: (None if isinstance(v, float) and not np.isfinite(v) else v)
            for k, v in dataclasses.asdict(self).items()}


def onset_alignment(audio_env: np.ndarray, motion_env: np.ndarray, fps: float,
                    max_lag_seconds: float = 1.0) -> Alignment:
  """Correlations of the two per-frame envelopes (frame 0, which has no previous frame, left out)."""
  a, m = np.asarray(audio_env)[1:], np.asarray(motion_env)[1:]
  max_lag = min(int(round(max_lag_seconds * fps)), max(len(m) - 3, 0))
  lags = np.arange(-max_lag, max_lag + 1)
  corr = np.array([lagged_correlation(a, m, int(lag)) for lag in lags])
  if np.all(np.isnan(corr)):
    return Alignment(float("nan"), 0, 0.0, float("nan"))
  # Ties (and near-ties from round-off) go to the smallest |lag|.
  order = np.lexsort((np.abs(lags), -np.round(np.nan_to_num(corr, nan=-np.inf), 9)))
  best = int(lags[order[0]])
  return Alignment(lag0=lagged_correlation(a, m, 0), best_lag=best, best_lag_seconds=float(best / fps),
                   best=float(corr[order[0]]))


def video_alignment(frames: np.ndarray, frame_times, audio: np.ndarray, sample_rate: int,
                    audio_start: float = 0.0, max_lag_seconds: float = 1.0) -> Alignment:
  """Onset alignment of decoded frames (F, H, W, C) shown at `frame_times` with their mono audio."""
  times = np.asarray(frame_times, np.float64)
  fps = 1.0 / np.diff(times).mean() if len(times) > 1 else 1.0
  return onset_alignment(onset_envelope(audio, sample_rate, times, audio_start), change_energy(frames),
                         fps, max_lag_seconds)

