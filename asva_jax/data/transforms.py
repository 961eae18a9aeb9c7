"""Record -> training/evaluation example: 12 frames, the aligned log-mel, flip, prompt.

Output of one example (channels-last):
  video  (12, H, W, 3) uint8   `to_unit_interval` gives the original's [0, 1] float frames
  mel    (128, 204) float32    ImageBind's normalised log-mel of the aligned 2 s (docs/reference.md §4.1)
  label int32, prompt bytes, key bytes, start float64 (s), flip bool
  vae_mean, vae_logvar (12, H/8, W/8, 4) float16, only when the shards carry VAE moments
"""

from __future__ import annotations

import io

import grain.python as grain
import numpy as np

from asva_jax.audio.fbank import waveform_to_mel
from asva_jax.data import clips
from asva_jax.data.features import AUDIO_SAMPLE_RATE, VAE_KEYS, audio_start, frame_times


def decode_image(data: bytes) -> np.ndarray:
  from PIL import Image
  with Image.open(io.BytesIO(data)) as image:
    return np.asarray(image.convert("RGB"))


def to_unit_interval(video):
  """uint8 frames -> float32 in [0, 1] (numpy or jax arrays; jit-friendly)."""
  return video.astype(np.float32) / 255.0


def make_clip(record: dict, start: float, flip: bool) -> dict:
  """The example of the 2-s clip of `record` starting at `start` s, mirrored when `flip`."""
  indices = clips.select_frames(frame_times(record), start)
  unique, inverse = np.unique(indices, return_inverse=True)
  decoded = np.stack([decode_image(record["frames"][i]) for i in unique])
  video = decoded[inverse]
  if flip:
    video = video[:, :, ::-1]
  audio = clips.audio_window(np.asarray(record["audio"]), start, AUDIO_SAMPLE_RATE,
                             audio_start=audio_start(record))
  example = {
      "video": np.ascontiguousarray(video),
      "mel": waveform_to_mel(audio, AUDIO_SAMPLE_RATE),
      "label": np.int32(record["label"]),
      "prompt": np.bytes_(record["prompt"]),
      "key": np.bytes_(record["key"]),
      "start": np.float64(start),
      "flip": np.bool_(flip),
  }
  if VAE_KEYS[0] in record:
    suffix = "_flipped" if flip else ""
    example["vae_mean"] = np.asarray(record["vae_mean" + suffix])[indices]
    example["vae_logvar"] = np.asarray(record["vae_logvar" + suffix])[indices]
  return example


class UniformClips(grain.RandomAccessDataSource):
  """Evaluation: each video of `source` as `num_clips` records, at the starts of docs/reference.md §7.6.

  Clip c of video v is item `v * num_clips + c` of the whole list; `part` restricts the
  list to some of those items (one host's part), in order.
  """

  def __init__(self, source, num_clips: int = 3, part=None):
    self.source = source
    self.num_clips = num_clips
    self.part = list(range(len(source) * num_clips)) if part is None else [int(i) for i in part]

  def __len__(self) -> int:
    return len(self.part)

  def __getitem__(self, index: int) -> dict:
    video, clip = divmod(self.part[int(index)], self.num_clips)
    record = dict(self.source[video])
    record["start"] = float(clips.uniform_starts(float(record["duration"]), self.num_clips)[clip])
    record["video_index"] = video
    record["clip_index"] = clip
    return record

  def __repr__(self) -> str:
    return f"UniformClips({self.source!r}, num_clips={self.num_clips}, {len(self.part)} items)"


class FixedClip(grain.MapTransform):
  """Evaluation: the clip at the record's "start", never flipped."""

  def map(self, record: dict) -> dict:
    example = make_clip(record, record["start"], flip=False)
    example["video_index"] = np.int32(record["video_index"])
    example["clip_index"] = np.int32(record["clip_index"])
    return example
