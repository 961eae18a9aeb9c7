"""Decoding one source video with PyAV into what a record stores, or a reason to skip it."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np

from asva_jax.audio.io import AudioDecodeError, audio_duration, load_audio_track
from asva_jax.data.clips import CLIP_SECONDS
from asva_jax.data.features import AUDIO_SAMPLE_RATE
from data_prep.resize import crop_and_resize

# A decoded stream this much shorter than its header says is a truncated file.
_TRUNCATION_SLACK_S = 0.5


class SkipVideo(Exception):
  """The video cannot be used; the message is the reason reported in the summary."""


@dataclasses.dataclass
class DecodedVideo:
  frames: np.ndarray        # (T, H, W, 3) uint8, resized
  frame_pts: np.ndarray     # (T,) int64 in units of time_base
  time_base: tuple[int, int]
  audio: np.ndarray         # (N,) float32, 16 kHz mono
  audio_start: float        # time in s of audio[0], on the frames' time axis
  video_duration: float
  audio_duration: float
  source_height: int
  source_width: int
  source_fps: float


def _video_duration(container, stream) -> float | None:
  if stream.duration is not None and stream.time_base is not None:
    return float(stream.duration * stream.time_base)
  if container.duration is not None:
    return container.duration / 1_000_000
  return None


def decode_frames(path: str, size: tuple[int, int], chunk: int = 32, *, truncate: bool = False):
  """All frames in decode order, cropped and resized to `size` while decoding (so a long
  high-resolution video never sits in memory whole): (T, h, w, 3) uint8, their pts, the
  stream time base, the header duration, the fps and the source (height, width).
  `truncate`: quantise as `crop_and_resize(truncate=True)`."""
  import av
  try:
    container = av.open(path)
  except (av.FFmpegError, OSError, ValueError) as e:
    raise SkipVideo(f"corrupt or unreadable mp4 ({e})") from e
  resized, pending, times, source_shape = [], [], [], (0, 0)
  try:
    if not container.streams.video:
      raise SkipVideo("no video stream")
    stream = container.streams.video[0]
    header_duration = _video_duration(container, stream)
    fps = float(stream.average_rate or stream.guessed_rate or 0.0)
    time_base = (stream.time_base.numerator, stream.time_base.denominator)
    try:
      for frame in container.decode(stream):
        if frame.pts is None or frame.time is None:
          continue
        pending.append(frame.to_ndarray(format="rgb24"))
        times.append(int(frame.pts))
        if len(pending) == chunk:
          source_shape = pending[0].shape[:2]
          resized.append(crop_and_resize(np.stack(pending), size, truncate=truncate))
          pending = []
    except (av.FFmpegError, ValueError) as e:
      raise SkipVideo(f"corrupt video stream after {len(times)} frames ({e})") from e
  finally:
    container.close()
  if pending:
    source_shape = pending[0].shape[:2]
    resized.append(crop_and_resize(np.stack(pending), size, truncate=truncate))
  if not times:
    raise SkipVideo("the video stream holds no decodable frames")
  return np.concatenate(resized), np.asarray(times, np.int64), time_base, header_duration, fps, source_shape


def decode_video(path: str, size: tuple[int, int]) -> DecodedVideo:
  """Frames resized to `size` with their times, the whole 16-kHz audio track, durations.

  Raises SkipVideo for a missing file, a corrupt or truncated one, a missing
  stream, or a clip shorter than 2 s.
  """
  if not Path(path).is_file():
    raise SkipVideo("listed but the file does not exist")
  frames, pts, time_base, video_duration, fps, (source_h, source_w) = decode_frames(path, size)
  times = pts * time_base[0] / time_base[1]
  step = 1.0 / fps if fps > 0 else 0.0
  decoded_span = float(times.max() - min(times.min(), 0.0)) + step
  if video_duration is None:
    video_duration = decoded_span
  elif decoded_span < video_duration - _TRUNCATION_SLACK_S:
    raise SkipVideo(f"truncated video: decoded {decoded_span:.2f} s of the {video_duration:.2f} s "
                    f"the header announces")
  try:
    header_audio = audio_duration(path)
    audio, audio_start = load_audio_track(path, sample_rate=AUDIO_SAMPLE_RATE)
  except AudioDecodeError as e:
    reason = str(e).removeprefix(f"{Path(path)}: ")
    raise SkipVideo(reason if reason == "no audio stream" else f"audio: {reason}") from e
  decoded_audio = len(audio) / AUDIO_SAMPLE_RATE
  if decoded_audio < header_audio - _TRUNCATION_SLACK_S:
    raise SkipVideo(f"truncated audio: decoded {decoded_audio:.2f} s of the {header_audio:.2f} s "
                    f"the header announces")
  if min(video_duration, header_audio) < CLIP_SECONDS:
    raise SkipVideo(f"shorter than {CLIP_SECONDS:g} s (video {video_duration:.2f} s, "
                    f"audio {header_audio:.2f} s)")
  return DecodedVideo(frames=frames, frame_pts=pts, time_base=time_base, audio=audio,
                      audio_start=audio_start,
                      video_duration=video_duration, audio_duration=header_audio,
                      source_height=source_h, source_width=source_w, source_fps=fps)


def encode_image(image: np.ndarray, image_format: str = "jpeg", quality: int = 95) -> bytes:
  """JPEG (4:4:4 chroma, `quality`) or PNG bytes of an (H, W, 3) uint8 image."""
  from PIL import Image
  buf = io.BytesIO()
  if image_format == "jpeg":
    Image.fromarray(image).save(buf, "JPEG", quality=quality, subsampling=0)
  elif image_format == "png":
    Image.fromarray(image).save(buf, "PNG", compress_level=1)
  else:
    raise ValueError(f"unknown image format {image_format!r} (jpeg or png)")
  return buf.getvalue()
