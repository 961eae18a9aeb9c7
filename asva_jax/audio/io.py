"""Reading audio: any file FFmpeg decodes, or the audio track of a video, as mono float32.

Decoding goes through PyAV (FFmpeg), converting every frame to float samples in [-1, 1]
(integer PCM scaled by 2^-(bits-1), as torchaudio.load does). Channels are averaged
(a proper downmix; the original's loaders take a reshaped "channel 0", spec §8.3, which
is a bug not reproduced). Resampling uses `resample.resample` (torchaudio's windowed-sinc
Hann resampler, width 6, rolloff 0.99).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from asva_jax.audio.resample import resample

# Decoded beyond a requested window on both sides so that resampling sees real
# neighbours (the filter spans far fewer samples) and seeking lands early enough.
_WINDOW_MARGIN_S = 0.1
_SEEK_BACK_S = 1.0


class AudioDecodeError(ValueError):
  """An audio or video file cannot be read, or has no audio stream."""


def _open(path: Path):
  import av
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
  """Duration of the file's first audio stream in seconds.

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


def _decode(path: Path, start: float | None, stop: float | None) -> tuple[np.ndarray, int, float]:
  """Mono float32 samples at the native rate covering [start, stop), the rate, and the
  time in seconds of the first returned sample (0 when decoding from the beginning).

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
    # Times are relative to the stream's first sample (e.g. mp3 encoder delay shifts it).
    origin = 0.0
    if stream.start_time is not None and stream.time_base is not None:
      origin = float(stream.start_time * stream.time_base)
    if start is not None and start > _SEEK_BACK_S and stream.time_base is not None:
      container.seek(int((start - _SEEK_BACK_S + origin) / stream.time_base), stream=stream,
                     backward=True)
      seeked = True
    decoded = 0
    untimed = False
    for packet in container.demux(stream):
      for frame in packet.decode():
        if first_time is None:
          untimed = seeked and frame.time is None
          if untimed:
            break
          first_time = float(frame.time) - origin if seeked else 0.0
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
  return samples, int(rate), first_time or 0.0


def load_audio(path: str | os.PathLike, sample_rate: int = 16000, start: float | None = None,
               duration: float | None = None) -> np.ndarray:
  """Mono float32 samples of `path` at `sample_rate`, optionally the window [start, start + duration) s.

  The window is cut after resampling: samples round(start * sample_rate) up to
  round((start + duration) * sample_rate) of the resampled track, so a window equals
  that slice of the whole resampled file. Times count from the audio stream's first
  sample. A window reaching past the end of the audio is returned shorter (possibly empty).
  """
  path = Path(path)
  if start is not None and start < 0:
    raise ValueError(f"load_audio: start must be >= 0, got {start}")
  if duration is not None and duration < 0:
    raise ValueError(f"load_audio: duration must be >= 0, got {duration}")
  begin = start or 0.0
  stop = None if duration is None else begin + duration
  fetch_start = None if begin == 0.0 else max(0.0, begin - _WINDOW_MARGIN_S)
  fetch_stop = None if stop is None else stop + _WINDOW_MARGIN_S
  samples, rate, first_time = _decode(path, fetch_start, fetch_stop)
  # Start resampling on an input sample whose index is a multiple of the reduced rate
  # ratio's `orig`: the output then lies on the whole file's output grid, so a window is
  # exactly the corresponding slice of the whole resampled file.
  g = math.gcd(rate, sample_rate)
  orig, new = rate // g, sample_rate // g
  first_index = int(round(first_time * rate))
  wanted = first_index if fetch_start is None else max(first_index, int(fetch_start * rate))
  aligned = -(-wanted // orig) * orig
  samples = resample(samples[aligned - first_index:], rate, sample_rate)
  first_out = aligned // orig * new
  begin_out = int(round(begin * sample_rate)) - first_out
  end_out = None if stop is None else int(round(stop * sample_rate)) - first_out
  return np.ascontiguousarray(samples[max(begin_out, 0):end_out])
