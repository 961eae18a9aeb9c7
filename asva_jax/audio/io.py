"""Reading audio: any file FFmpeg decodes, or the audio track of a video, as mono float32.

Decoding goes through PyAV (FFmpeg), converting every frame to float samples in [-1, 1]
(integer PCM scaled by 2^-(bits-1), as torchaudio.load does). Channels are averaged
(a proper downmix; the original's loaders take a reshaped "channel 0", docs/reference.md §8.3, which
is a bug not reproduced). Resampling uses `resample.resample` (torchaudio's windowed-sinc
Hann resampler, width 6, rolloff 0.99).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from asva_jax.errors import AsvaError
from asva_jax.audio.resample import resample
from asva_jax.constants import SAMPLE_RATE

# Decoded beyond a requested window on both sides so that resampling sees real
# neighbours (the filter spans far fewer samples) and seeking lands early enough.
_WINDOW_MARGIN_S = 0.1
_SEEK_BACK_S = 1.0


class AudioDecodeError(AsvaError, ValueError):
  """An audio or video file cannot be read, or has no audio stream."""


def _open(path: Path):
  import av
  if path.is_dir():
    raise AudioDecodeError(f"{path}: is a folder; expected an audio or video file")
  if not path.is_file():
    raise AudioDecodeError(f"{path}: no such file")
  try:
    container = av.open(str(path))
  except (av.FFmpegError, OSError, ValueError) as e:
    raise AudioDecodeError(f"{path}: unreadable or corrupt media file ({e})") from e
  if not container.streams.audio:
    container.close()
    raise AudioDecodeError(f"{path}: no audio stream")
  return container


def audio_duration(path: str | os.PathLike) -> float:
  """Duration of the file's first audio stream in seconds (a length: the audio ends at
  `audio_start_time(path) + audio_duration(path)`).

  Taken from the stream header, else the container header, else by decoding.
  """
  path = Path(path)
  container = _open(path)
  try:
    stream = container.streams.audio[0]
    if stream.duration is not None and stream.time_base is not None:
      return float(stream.duration * stream.time_base)
    if container.duration is not None:
      import av
      return container.duration / av.time_base
  finally:
    container.close()
  samples, rate, _ = _decode(path, None, None)
  return len(samples) / rate


def _header_start(stream) -> float:
  if stream.start_time is not None and stream.time_base is not None:
    return float(stream.start_time * stream.time_base)
  return 0.0


def _frame_start(frame, stream) -> float:
  """Time of a decoded frame's first sample; the header's stream start for untimed frames."""
  return float(frame.time) if frame.time is not None else _header_start(stream)


def audio_start_time(path: str | os.PathLike) -> float:
  """Presentation time in seconds of the first sample `load_audio(path)` returns.

  The time axis is the container's, the one video frame timestamps use: the time of the
  first decoded audio frame, after FFmpeg has dropped the codec's priming samples (AAC
  edit lists, mp3 encoder delay; an mp3 file's first sample is at ~0.025 s). Not 0 when
  the audio stream starts later (or earlier) than the video. Frames without timestamps:
  the stream header's start time, else 0.
  """
  import av
  path = Path(path)
  container = _open(path)
  try:
    stream = container.streams.audio[0]
    for packet in container.demux(stream):
      for frame in packet.decode():
        return _frame_start(frame, stream)
    return _header_start(stream)
  except (av.FFmpegError, ValueError) as e:
    raise AudioDecodeError(f"{path}: corrupt audio stream ({e})") from e
  finally:
    container.close()


def _decode(path: Path, start: float | None, stop: float | None) -> tuple[np.ndarray, int, float]:
  """Mono float32 samples at the native rate covering the presentation times [start, stop),
  the rate, and the presentation time in seconds of the first returned sample.

  Starts far into the file are reached by seeking; if the frames then carry no
  timestamps, or nothing follows, the file is decoded from the beginning instead.
  """
  import av
  container = _open(path)
  chunks: list[np.ndarray] = []
  first_time = None
  seeked = False
  try:
    stream = container.streams.audio[0]
    rate = stream.codec_context.sample_rate or stream.rate
    to_float = av.AudioResampler(format="fltp")
    far = start is not None and start - _header_start(stream) > _SEEK_BACK_S
    if far and stream.time_base is not None:
      container.seek(int((start - _SEEK_BACK_S) / stream.time_base), stream=stream, backward=True)
      seeked = True
    decoded = 0
    untimed = False
    for packet in container.demux(stream):
      for frame in packet.decode():
        if first_time is None:
          untimed = seeked and frame.time is None
          if untimed:
            break
          first_time = _frame_start(frame, stream)
        for converted in to_float.resample(frame):
          chunks.append(converted.to_ndarray().mean(axis=0, dtype=np.float64))
        decoded += frame.samples
      if untimed or (stop is not None and first_time is not None and first_time + decoded / rate >= stop):
        break
  except (av.FFmpegError, ValueError) as e:
    raise AudioDecodeError(f"{path}: corrupt audio stream ({e})") from e
  finally:
    container.close()
  if seeked and (untimed or not chunks):  # no timestamps, or sought past the end
    return _decode(path, None, stop)
  if not chunks:
    raise AudioDecodeError(f"{path}: the audio stream holds no decodable samples")
  samples = np.concatenate(chunks).astype(np.float32)
  return samples, int(rate), first_time


def load_audio_track(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, float]:
  """The whole track at `sample_rate` (mono float32) and the presentation time in seconds of its
  first sample (`audio_start_time`), from one decode of the file."""
  samples, rate, first_time = _decode(Path(path), None, None)
  return resample(samples, rate, sample_rate), first_time


def load_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE, start: float | None = None,
               duration: float | None = None) -> np.ndarray:
  """Mono float32 samples of `path` at `sample_rate`, optionally the window [start, start + duration) s.

  Without `start`: the whole track (or its first `duration` s) from its first sample,
  which lies at presentation time `t0 = audio_start_time(path)`. With `start`: times
  are presentation times on the container's time axis, the one of the video frame
  timestamps (as the original selects audio packets by timestamp), not offsets into
  the track, so a window of a video's audio lines up with its frames even when the
  audio stream starts later or earlier than the video. The window is cut after
  resampling: track samples round((start - t0) * sample_rate) up to
  round((start + duration - t0) * sample_rate), so it equals that slice of the whole
  resampled track. Its part before the first sample (start < t0) is zeros; a window
  reaching past the end of the audio is returned shorter (possibly empty). Offsets from
  the first sample instead (the original's loader for a separate audio file slices
  `[int(s * 16000), int((s + 2) * 16000))` of the track): slice `load_audio(path)`.
  """
  path = Path(path)
  if duration is not None and duration < 0:
    raise ValueError(f"load_audio: duration must be >= 0, got {duration}")
  if start is None and duration is None:
    return load_audio_track(path, sample_rate)[0]
  t0 = audio_start_time(path)
  begin = t0 if start is None else float(start)
  stop = None if duration is None else begin + duration
  fetch_start = begin - _WINDOW_MARGIN_S
  fetch_stop = None if stop is None else stop + _WINDOW_MARGIN_S
  samples, rate, first_time = _decode(path, fetch_start if fetch_start > t0 else None, fetch_stop)
  # Start resampling on an input sample whose index (in the track) is a multiple of the
  # reduced rate ratio's `orig`: the output then lies on the whole track's output grid, so
  # a window is exactly the corresponding slice of the whole resampled track.
  g = math.gcd(rate, sample_rate)
  orig, new = rate // g, sample_rate // g
  first_index = int(round((first_time - t0) * rate))
  wanted = max(first_index, int((fetch_start - t0) * rate))
  aligned = -(-wanted // orig) * orig
  samples = resample(samples[aligned - first_index:], rate, sample_rate)
  first_out = aligned // orig * new
  begin_out = int(round((begin - t0) * sample_rate))
  end_out = None if stop is None else int(round((stop - t0) * sample_rate))
  end = None if end_out is None else max(end_out - first_out, 0)
  window = samples[max(begin_out - first_out, 0):end]
  if begin_out < 0:  # before the first sample: silence
    pad = -begin_out if end_out is None else min(-begin_out, end_out - begin_out)
    window = np.concatenate([np.zeros(pad, np.float32), window])
  return np.ascontiguousarray(window)
