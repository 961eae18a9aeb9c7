"""The original resize pipeline (docs/reference.md §8.3): crop to the target aspect ratio, then an
antialiased bilinear resize, done with torch so the pixels match torchvision's
`Resize(antialias=True)` on float frames (docs/reference.md §10 item 19: PIL and jax.image differ).
"""

from __future__ import annotations

import numpy as np


def aspect_crop_box(height: int, width: int, target: tuple[int, int]) -> tuple[int, int, int, int]:
  """(top, left, height, width) of the centred crop with the target's aspect ratio.

  Integer arithmetic as the original: trim the width when the source is wider
  than the target, else the height.
  """
  target_h, target_w = target
  target_ratio = float(target_h) / target_w
  if target_ratio >= float(height) / width:
    trimmed = int(height / target_ratio)
    return 0, (width - trimmed) // 2, height, trimmed
  trimmed = int(width * target_ratio)
  return (height - trimmed) // 2, 0, trimmed, width


def crop_and_resize(frames: np.ndarray, target: tuple[int, int], chunk: int = 32, *,
                    truncate: bool = False) -> np.ndarray:
  """(T, H, W, 3) uint8 -> (T, target_h, target_w, 3) uint8, rounded from the float result, or
  truncated as torchvision's `to_pil_image` quantises the original's conditioning image."""
  import torch
  import torch.nn.functional as F

  frames = np.asarray(frames)
  top, left, h, w = aspect_crop_box(frames.shape[1], frames.shape[2], target)
  out = np.empty((frames.shape[0],) + tuple(target) + (3,), np.uint8)
  for i in range(0, frames.shape[0], chunk):
    x = torch.from_numpy(np.ascontiguousarray(frames[i:i + chunk, top:top + h, left:left + w]))
    x = x.permute(0, 3, 1, 2).float() / 255.0
    if (h, w) != tuple(target):
      x = F.interpolate(x, size=tuple(target), mode="bilinear", align_corners=False, antialias=True)
    y = x.clamp(0.0, 1.0) * 255.0
    y = (y if truncate else y.round()).to(torch.uint8).permute(0, 2, 3, 1)
    out[i:i + chunk] = y.numpy()
  return out
