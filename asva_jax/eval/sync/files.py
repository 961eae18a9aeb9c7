"""Synchronisation measures of video files with their own sound (`python -m asva_jax.eval.sync`).

For each file: the correlation of its audio onset envelope with its frame-difference
energy at lag 0, and the best lag within ±max_lag s with its correlation (positive:
the sound comes after the motion). See `asva_jax.eval.sync` for the definitions.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from asva_jax.constants import SAMPLE_RATE
from asva_jax.errors import AsvaError
from asva_jax.eval import sync
from asva_jax.media.video import VideoDecodeError, decode_frames


class VideoReadError(AsvaError, ValueError):
  """A video file cannot be used for the synchronisation measures."""


def read_frames(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
  """All frames (T, H, W, 3) uint8 of the first video stream, in time order, and their times (s),
  through the library's one video decoder."""
  path = Path(path)
  if not path.is_file():
    raise VideoReadError(f"{path}: no such file")
  try:
    decoded = decode_frames(path)
  except VideoDecodeError as e:
    raise VideoReadError(f"{path}: unreadable or corrupt video: {e}") from e
  if len(decoded.frames) < 4:
    raise VideoReadError(f"{path}: {len(decoded.frames)} decodable frames; need at least 4 to correlate")
  order = np.argsort(decoded.times, kind="stable")
  return decoded.frames[order], decoded.times[order]


def measure(path: str | os.PathLike, max_lag_seconds: float = 1.0) -> sync.Alignment:
  """Onset alignment of one video file with its own audio track."""
  from asva_jax.audio.io import load_audio_track
  frames, times = read_frames(path)
  audio, audio_start = load_audio_track(path, sample_rate=SAMPLE_RATE)
  if len(audio) < 2048:
    raise VideoReadError(f"{path}: the audio track is too short ({len(audio)} samples at 16 kHz)")
  return sync.video_alignment(frames, times, audio, SAMPLE_RATE, audio_start, max_lag_seconds)


def summarise(results: dict[str, sync.Alignment]) -> dict:
  """Means over videos (NaN entries, e.g. a static video, left out) and the per-video values."""
  def mean(values):
    values = [v for v in values if np.isfinite(v)]
    return float(np.mean(values)) if values else None
  items = list(results.values())
  return {"videos": {k: v.to_dict() for k, v in results.items()},
          "mean": {"lag0": mean([a.lag0 for a in items]), "best": mean([a.best for a in items]),
                   "abs_best_lag_seconds": mean([abs(a.best_lag_seconds) for a in items])}}
