"""Writing a looping GIF atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from asva_jax.constants import FPS


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
