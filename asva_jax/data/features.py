"""The record schema of the video shards, shared by `data_prep.build` (writer) and the loader.

One record per source video. Only TFDS features that work without TensorFlow are
used (`Tensor`, `Text`, `ClassLabel`, `Scalar`), so `tfds.data_source` reads the
shards with numpy alone:

  frames          (T,) bytes    every decoded frame, cropped and resized, JPEG or PNG
  frame_pts       (T,) int64    presentation timestamp of each frame (decode order), and
  time_base       (2,) int64    its unit as (numerator, denominator): times are exact
                                (`frame_times`); float features are stored as float32
  audio           (N,) float32  the whole audio track, 16 kHz mono (channel mean)
  audio_start     float32       time in s of `audio`'s first sample on the frames' time axis
                                (`asva_jax.audio.io.audio_start_time`): audio and video streams
                                may start at different times, clips are cut by absolute time
  video_duration, audio_duration, duration (= their min)   from the container headers
  key (path relative to the dataset's video root), source_path, class_folder, prompt, label
  height, width                 stored frame size; source_height, source_width, source_fps

With `--vae-latents`: vae_mean, vae_logvar, vae_mean_flipped, vae_logvar_flipped
  (T, H/8, W/8, 4) float16, the VAE posterior moments of every stored frame and of its mirror
  (`data_prep.latents`). Stored as raw bytes (`encoding="bytes"`): a float16 tensor without it
  becomes a float32 list (twice the size), and TFDS needs an encoding for several unknown
  dimensions; zlib saves under 10% on these values at 9x the encoding time.
"""

from __future__ import annotations

import numpy as np

from asva_jax.constants import SAMPLE_RATE as AUDIO_SAMPLE_RATE
from asva_jax.data.errors import DataError

VERSION = "1.0.0"
FILENAME_TEMPLATE = "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}"
VAE_KEYS = ("vae_mean", "vae_logvar", "vae_mean_flipped", "vae_logvar_flipped")
LATENT_CHANNELS = 4


def make_features(class_names: list[str], vae_latents: bool = False):
  """The `tfds.features.FeaturesDict` of a record."""
  import tensorflow_datasets as tfds
  f = tfds.features
  spec = {
      "key": f.Text(),
      "source_path": f.Text(),
      "class_folder": f.Text(),
      "prompt": f.Text(),
      "label": f.ClassLabel(names=list(class_names)),
      "frames": f.Tensor(shape=(None,), dtype=np.object_),
      "frame_pts": f.Tensor(shape=(None,), dtype=np.int64),
      "time_base": f.Tensor(shape=(2,), dtype=np.int64),
      "audio": f.Tensor(shape=(None,), dtype=np.float32),
      "audio_start": f.Scalar(dtype=np.float32),
      "video_duration": f.Scalar(dtype=np.float32),
      "audio_duration": f.Scalar(dtype=np.float32),
      "duration": f.Scalar(dtype=np.float32),
      "height": f.Scalar(dtype=np.int32),
      "width": f.Scalar(dtype=np.int32),
      "source_height": f.Scalar(dtype=np.int32),
      "source_width": f.Scalar(dtype=np.int32),
      "source_fps": f.Scalar(dtype=np.float32),
  }
  if vae_latents:
    for name in VAE_KEYS:
      spec[name] = f.Tensor(shape=(None, None, None, LATENT_CHANNELS), dtype=np.float16,
                            encoding="bytes")
  return f.FeaturesDict(spec)


def frame_times(record) -> np.ndarray:
  """(T,) float64 seconds of a record's frames: pts * numerator / denominator."""
  num, den = (int(v) for v in record["time_base"])
  return np.asarray(record["frame_pts"], np.float64) * num / den


def audio_start(record) -> float:
  """Time in seconds of the first sample of a record's audio (on the frames' time axis)."""
  if "audio_start" not in record:
    key = record.get("key", b"?")
    key = key.decode() if isinstance(key, bytes) else key
    raise DataError(f"record {key!r} has no audio_start: the shards predate it and may pair "
                   f"frames with shifted audio; rebuild them with python -m data_prep.build")
  return float(record["audio_start"])
