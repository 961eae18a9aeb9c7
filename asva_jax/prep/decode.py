"""Decoding one source video into what a record stores (frames through `media.video`, the audio
track through `audio.io`), or a reason to skip it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from asva_jax.audio.io import AudioDecodeError, audio_duration, load_audio_track
from asva_jax.constants import CLIP_SECONDS, SAMPLE_RATE as AUDIO_SAMPLE_RATE
from asva_jax.media.video import VideoDecodeError, decode_frames

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


def decode_video(path: str, size: tuple[int, int]) -> DecodedVideo:
  """Frames resized to `size` with their times, the whole 16-kHz audio track, durations.

  Raises SkipVideo for a missing file, a corrupt or truncated one, a missing
  stream, or a clip shorter than 2 s.
  """
  if not Path(path).is_file():
    raise SkipVideo("listed but the file does not exist")
  try:
    decoded = decode_frames(path, size)
  except VideoDecodeError as e:
    raise SkipVideo(str(e)) from e
  frames, pts, time_base, times = decoded.frames, decoded.pts, decoded.time_base, decoded.times
  video_duration, fps, (source_h, source_w) = decoded.header_duration, decoded.fps, decoded.source_shape
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
