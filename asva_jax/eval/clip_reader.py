"""Reading the evaluated clips: generated mp4s and their reference clips (docs/reference.md §9.1).

Generated clips are the sampler's files, `<reference video without .mp4>_clip-NN.mp4`; each is
read as the original reads one (`load_av_clips_uniformly(num_clips=1)`): the 12 frames at 6 fps
of the 2-s window centred in min(video, audio duration), and that window's audio as ImageBind's
log-mel. Reference clip NN is the NN-th of the video's uniform clips (docs/reference.md §7.6), from shards
built by `data_prep.build` or from a folder of videos, at the generated clips' frame size.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from asva_jax.audio.fbank import waveform_to_mel
from asva_jax.audio.io import AudioDecodeError, audio_duration, load_audio_track
from asva_jax.constants import SAMPLE_RATE
from asva_jax.data import clips as clip_rules
from asva_jax.errors import AsvaError
from asva_jax.media.video import VideoDecodeError, decode_frames

GENERATED_NAME = re.compile(r"^(?P<video>.+)_clip-(?P<clip>\d+)\.mp4$")


class ClipError(AsvaError, ValueError):
  """A generated or reference clip is missing, misnamed or unreadable."""


@dataclasses.dataclass(frozen=True)
class MetricClip:
  """One clip as the metrics read it (named apart from the sampler's `pipeline.Clip`)."""
  video: np.ndarray   # (12, H, W, 3) uint8
  mel: np.ndarray     # (128, 204) float32


def generated_files(folder: str | Path) -> dict[str, dict[int, Path]]:
  """Reference video name (`class/name.mp4`) -> {clip index: generated file}."""
  folder = Path(folder)
  if not folder.is_dir():
    raise ClipError(f"--generated {folder}: no such folder")
  out: dict[str, dict[int, Path]] = {}
  for path in sorted(folder.rglob("*.mp4")):
    rel = path.relative_to(folder).as_posix()
    match = GENERATED_NAME.match(rel)
    if not match:
      raise ClipError(f"{path}: not named like a generated clip (<video>_clip-NN.mp4, as the sampler "
                      f"names them)")
    out.setdefault(match["video"] + ".mp4", {})[int(match["clip"])] = path
  if not out:
    raise ClipError(f"--generated {folder}: no .mp4 files")
  return out


def _decode_video(path: Path) -> tuple[np.ndarray, np.ndarray, float]:
  """Every frame (T, H, W, 3) uint8 in decode order, their times (s) and the stream's header
  duration (else the last frame's end), through the library's one video decoder."""
  try:
    decoded = decode_frames(path)
  except VideoDecodeError as e:
    raise ClipError(f"{path}: {e}") from e
  times = decoded.times
  duration = decoded.header_duration
  if duration is None:
    duration = float(times[-1]) + 1.0 / (decoded.fps or 6)
  return decoded.frames, times, duration


def _clip(frames, times, audio, audio_start, start) -> MetricClip:
  video = frames[clip_rules.select_frames(times, start)]
  wave = clip_rules.audio_window(audio, start, SAMPLE_RATE, audio_start=audio_start)
  return MetricClip(np.ascontiguousarray(video), waveform_to_mel(wave, SAMPLE_RATE))


def _audio(path: Path) -> tuple[np.ndarray, float, float]:
  try:
    track, start = load_audio_track(path, SAMPLE_RATE)
    return track, start, audio_duration(path)
  except AudioDecodeError as e:
    raise ClipError(str(e)) from e


def read_generated(path: Path) -> MetricClip:
  """A generated clip as the original reads it: the centred 2-s window of min(video, audio)."""
  frames, times, video_duration = _decode_video(path)
  track, audio_start, duration = _audio(path)
  start = clip_rules.uniform_starts(min(video_duration, duration), 1)[0]
  return _clip(frames, times, track, audio_start, start)


def resize_frames(video: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """The original's resize pipeline (aspect crop, antialiased bilinear) when the size differs."""
  if video.shape[1:3] == tuple(size):
    return video
  from asva_jax.media.resize import crop_and_resize
  return crop_and_resize(video, size)


# --- references ------------------------------------------------------------------------------

@dataclasses.dataclass
class ReferenceVideo:
  name: str         # "class/name.mp4", the path relative to the dataset's video folder
  category: str     # eval.py's text for IT: the class folder, else the dataset's single prompt
  index: int        # position in the reference list (shard record or file order)


class ShardReferences:
  """Reference videos from the shards of `data_prep.build` (one record per video)."""

  def __init__(self, data_dir: str | Path, split: str = "test"):
    from asva_jax.data import open_split
    self.source = open_split(data_dir, split)
    self.videos = {}
    for i in range(len(self.source)):
      record = self.source[i]
      key = _text(record["key"])
      folder = key.rsplit("/", 1)[0] if "/" in key else ""
      self.videos[key] = ReferenceVideo(key, folder or _text(record["prompt"]), i)

  def clips(self, name: str, num_clips: int, size: tuple[int, int]) -> Iterator[MetricClip]:
    from asva_jax.data.transforms import FixedClip, UniformClips
    index = self.videos[name].index
    uniform = UniformClips(self.source, num_clips, part=range(index * num_clips, (index + 1) * num_clips))
    for i in range(num_clips):
      example = FixedClip().map(uniform[i])
      yield MetricClip(resize_frames(example["video"], size), example["mel"])


class FolderReferences:
  """Reference videos from a folder of mp4s (`class/name.mp4`; flat folders get `category`)."""

  def __init__(self, folder: str | Path, category: str):
    self.folder = Path(folder)
    self.videos = {}
    for i, path in enumerate(sorted(self.folder.rglob("*.mp4"))):
      name = path.relative_to(self.folder).as_posix()
      self.videos[name] = ReferenceVideo(name, name.rsplit("/", 1)[0] if "/" in name else category, i)
    if not self.videos:
      raise ClipError(f"--reference {self.folder}: no .mp4 files (and no dataset_info.json of shards)")

  def clips(self, name: str, num_clips: int, size: tuple[int, int]) -> Iterator[MetricClip]:
    path = self.folder / name
    frames, times, video_duration = _decode_video(path)
    track, audio_start, duration = _audio(path)
    frames = resize_frames(frames, size)
    for start in clip_rules.uniform_starts(min(video_duration, duration), num_clips):
      yield _clip(frames, times, track, audio_start, start)


def open_references(path: str | Path, split: str = "test", category: str = "hitting with a stick"):
  """Shards (a folder with, or above, `dataset_info.json`) or a folder of videos."""
  path = Path(path)
  if not path.is_dir():
    raise ClipError(f"--reference {path}: no such folder")
  if (path / "dataset_info.json").is_file() or any(path.glob("*/*/dataset_info.json")):
    return ShardReferences(path, split)
  return FolderReferences(path, category)


def _text(value) -> str:
  return value.decode() if isinstance(value, bytes) else str(value)
