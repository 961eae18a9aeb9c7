"""Encoding one frame as JPEG or PNG bytes (what a shard record stores)."""

from __future__ import annotations

import io

import numpy as np


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
