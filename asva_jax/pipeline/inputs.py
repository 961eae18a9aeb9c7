"""User inputs -> what a clip needs: the first frame at the model's size (uint8) and the 16-kHz
audio window. Any image format PIL reads; any audio or video FFmpeg reads.

Image: the original's preprocessing (docs/reference.md §8.3): centre crop to the target aspect ratio,
then an antialiased bilinear resize (torch, as torchvision) in [0, 1], then uint8 by truncation,
as the original's pipeline receives its conditioning image (a PIL image from `to_pil_image`,
docs/reference.md §7.6).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from asva_jax.constants import CLIP_SECONDS, FPS, SAMPLE_RATE
from asva_jax.errors import AsvaError

# Decoded AAC/MP3 tracks run a few ms short or long of their nominal length.
SHORT_AUDIO_SLACK_S = 0.05


class InputError(AsvaError, ValueError):
  """An image, audio or video file that is missing, unreadable or unusable."""


@dataclasses.dataclass
class Clip:
  """One 2-s clip to animate: `image` (H, W, 3) uint8 at the model's size, `audio` (32000,)
  float32 at 16 kHz, the category `prompt`."""

  image: np.ndarray
  audio: np.ndarray
  prompt: str


def load_image(path: str | os.PathLike) -> np.ndarray:
  """(H, W, 3) uint8 RGB from any file PIL reads."""
  from PIL import Image, UnidentifiedImageError
  path = Path(path)
  if not path.is_file():
    raise InputError(f"{path}: no such image file")
  try:
    with Image.open(path) as im:
      return np.asarray(im.convert("RGB"))
  except (UnidentifiedImageError, OSError, ValueError) as e:
    raise InputError(f"{path}: unreadable or corrupt image ({e})") from e


def prepare_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """Centre crop to the aspect ratio of `size`, antialiased bilinear resize, uint8 (truncated)."""
  from data_prep.resize import crop_and_resize
  image = np.asarray(image)
  if image.ndim != 3 or image.shape[-1] != 3:
    raise InputError(f"image: expected (H, W, 3), got shape {image.shape}")
  if image.dtype != np.uint8:
    image = np.clip(np.asarray(image, np.float32) * 255.0, 0, 255).astype(np.uint8)
  return crop_and_resize(image[None], tuple(size), truncate=True)[0]


def load_audio_track(path: str | os.PathLike) -> tuple[np.ndarray, float]:
  """The whole track of an audio or video file, mono float32 at 16 kHz, and the presentation
  time of its first sample (a video's audio may start before or after its frames)."""
  from asva_jax.audio import AudioDecodeError
  from asva_jax.audio import load_audio_track as _load
  try:
    return _load(path, SAMPLE_RATE)
  except AudioDecodeError as e:
    raise InputError(str(e)) from e


def check_length(audio: np.ndarray, source: str, seconds: float = CLIP_SECONDS) -> None:
  have = len(audio) / SAMPLE_RATE
  if have < seconds - SHORT_AUDIO_SLACK_S:
    raise InputError(f"{source}: the audio lasts {have:.2f} s; AVSyncD animates {seconds:g}-s windows, "
                     f"give at least {seconds:g} s of audio")


def window(audio: np.ndarray, start: float, seconds: float = CLIP_SECONDS, audio_start: float = 0.0) -> np.ndarray:
  """`seconds` of a track whose first sample lies at time `audio_start`, from time `start`;
  zeros where the track has no samples, so always exactly `seconds` long."""
  from asva_jax.data.clips import audio_window
  n = int(round(seconds * SAMPLE_RATE))
  out = np.asarray(audio_window(audio, start, SAMPLE_RATE, seconds, audio_start=audio_start), np.float32)
  return np.pad(out, (0, n - len(out)))


def clip_starts(duration: float, num_clips: int = 1, start: float | None = None) -> list[float]:
  """The given start, else the original's: centred for one clip, linspace(0, d - 2, k) for k."""
  from asva_jax.data.clips import uniform_starts
  if start is not None:
    if start < 0 or start > duration - CLIP_SECONDS + SHORT_AUDIO_SLACK_S:
      raise InputError(f"--start {start}: a 2-s window must lie inside the {duration:.2f}-s audio")
    return [float(start)]
  if num_clips < 1:
    raise InputError(f"--num-clips {num_clips}: must be >= 1")
  return [max(0.0, float(s)) for s in uniform_starts(duration, num_clips)]


def video_first_frames(path: str | os.PathLike, starts: list[float], size: tuple[int, int]) -> list[np.ndarray]:
  """For each start time, the frame the original's clip loader would take first, at `size`."""
  from asva_jax.data.clips import select_frames
  from data_prep.decode import SkipVideo, decode_frames
  path = Path(path)
  if not path.is_file():
    raise InputError(f"{path}: no such video file")
  try:
    frames, pts, time_base, _, _, _ = decode_frames(str(path), tuple(size), truncate=True)
  except SkipVideo as e:
    raise InputError(f"{path}: {e}") from e
  times = pts * time_base[0] / time_base[1]
  order = np.argsort(times, kind="stable")
  return [frames[order[select_frames(times[order], s)[0]]] for s in starts]
