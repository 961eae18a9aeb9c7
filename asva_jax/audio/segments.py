"""Which audio tokens each video frame may attend to (docs/reference.md §4.6)."""

from __future__ import annotations

import math

import numpy as np


def segment_masks(n_segment: int = 12, grid: tuple[int, int] = (12, 19)) -> np.ndarray:
  """Boolean (n_segment, 1 + rows * cols) masks, True = may attend.

  The `cols` time columns of the (rows, cols) patch grid are covered by `n_segment`
  overlapping windows of ceil(cols / n_segment) columns, starting at
  round(linspace(0, cols - width, n_segment)); a window selects its columns in every
  row. Tokens are ordered CLS first, then mel-major (token 1 + row * cols + col); CLS
  is always visible.
  """
  rows, cols = grid
  if n_segment < 1 or rows < 1 or cols < 1:
    raise ValueError(f"segment_masks: need positive sizes, got n_segment={n_segment}, grid={grid}")
  width = math.ceil(cols / n_segment)
  starts = np.round(np.linspace(0, cols - width, n_segment)).astype(int)
  in_window = np.zeros((n_segment, rows, cols), bool)
  for s, start in enumerate(starts):
    in_window[s, :, start:start + width] = True
  cls = np.ones((n_segment, 1), bool)
  return np.concatenate([cls, in_window.reshape(n_segment, rows * cols)], axis=1)
