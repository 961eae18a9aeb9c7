"""The one decode path for video frames (PyAV): every frame in decode order with its time,
optionally cropped and resized while decoding so a long high-resolution video never sits in
memory whole."""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from asva_jax.errors import AsvaError
from asva_jax.media.resize import crop_and_resize


class VideoDecodeError(AsvaError, ValueError):
  """The file is not a readable video; the message is the reason, without the path."""


@dataclasses.dataclass
class DecodedFrames:
  frames: np.ndarray                # (T, h, w, 3) uint8, in decode order
  pts: np.ndarray                   # (T,) int64 in units of time_base
  time_base: tuple[int, int]
  header_duration: float | None     # the stream's (else the container's) duration, s
  fps: float                        # 0.0 when the header gives no rate
  source_shape: tuple[int, int]     # (height, width) as stored in the file

  @property
  def times(self) -> np.ndarray:
    """(T,) float64 presentation times in s."""
    return self.pts * self.time_base[0] / self.time_base[1]


def _header_duration(container, stream) -> float | None:
  if stream.duration is not None and stream.time_base is not None:
    return float(stream.duration * stream.time_base)
  if container.duration is not None:
    return container.duration / 1_000_000
  return None


def decode_frames(path: str | os.PathLike, size: tuple[int, int] | None = None, chunk: int = 32, *,
                  truncate: bool = False) -> DecodedFrames:
  """All frames with a time, as stored (`size` None) or through `crop_and_resize(size)`,
  `chunk` frames at a time. `truncate`: quantise as `crop_and_resize(truncate=True)`."""
  import av
  try:
    container = av.open(str(path))
  except (av.FFmpegError, OSError, ValueError) as e:
    raise VideoDecodeError(f"corrupt or unreadable mp4 ({e})") from e
  done, pending, pts, source_shape = [], [], [], (0, 0)

  def flush():
    batch = np.stack(pending)
    done.append(batch if size is None else crop_and_resize(batch, tuple(size), truncate=truncate))
    pending.clear()

  try:
    if not container.streams.video:
      raise VideoDecodeError("no video stream")
    stream = container.streams.video[0]
    header_duration = _header_duration(container, stream)
    fps = float(stream.average_rate or stream.guessed_rate or 0.0)
    time_base = (stream.time_base.numerator, stream.time_base.denominator)
    try:
      for frame in container.decode(stream):
        if frame.pts is None or frame.time is None:
          continue
        pending.append(frame.to_ndarray(format="rgb24"))
        source_shape = pending[0].shape[:2]
        pts.append(int(frame.pts))
        if len(pending) == chunk:
          flush()
    except (av.FFmpegError, ValueError) as e:
      raise VideoDecodeError(f"corrupt video stream after {len(pts)} frames ({e})") from e
  finally:
    container.close()
  if pending:
    flush()
  if not pts:
    raise VideoDecodeError("the video stream holds no decodable frames")
  return DecodedFrames(np.concatenate(done), np.asarray(pts, np.int64), time_base, header_duration, fps,
                       tuple(source_shape))
