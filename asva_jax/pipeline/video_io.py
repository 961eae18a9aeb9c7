"""Writing sampled videos: H.264 mp4 at 6 fps with the conditioning audio as AAC, or a GIF."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from asva_jax.pipeline.inputs import FPS, SAMPLE_RATE


def write_video(path: str | os.PathLike, frames: np.ndarray, audio: np.ndarray | None,
                fps: int = FPS, sample_rate: int = SAMPLE_RATE) -> Path:
  """(T, H, W, 3) uint8 -> mp4 (atomically); `audio` mono float32 or None. Odd sizes are padded
  to even ones by edge repetition (yuv420p needs even sides)."""
  from data_prep.mp4 import write_mp4
  frames = np.asarray(frames, np.uint8)
  pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
  if pad_h or pad_w:
    frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
  write_mp4(path, frames, fps, None if audio is None else np.asarray(audio, np.float32)[None],
            sample_rate=sample_rate)
  return Path(path)


def write_gif(path: str | os.PathLike, frames: np.ndarray, fps: int = FPS) -> Path:
  """(T, H, W, 3) uint8 -> looping GIF, written to a temporary name and renamed."""
  from PIL import Image
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  images = [Image.fromarray(f) for f in np.asarray(frames, np.uint8)]
  fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp.gif", dir=path.parent)
  os.close(fd)
  try:
    images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.unlink(tmp)
  return path
