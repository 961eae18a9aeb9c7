"""Sample noise: how much the sampled pixels flicker where nothing should move.

The demo's samples are judged by eye before any number: a model that times the motion right
but covers every frame in flickering grain still looks broken. Two figures, both in /255
(uint8 pixel units), averaged over clips, frames 1..F-1 and the colour channels:

* `frame_change`: mean |x_j - x_{j-1}| over the whole frame (motion and noise together);
* `static_change`: the same over the pixels where the real clip is static, i.e. where the
  real video never changes by more than `STATIC_THRESHOLD` between frames. The real videos
  are decoded H.264, whose still background flickers by a few levels, so the threshold is
  not 0; the real clips' own value there is the floor to compare the samples against.
"""

from __future__ import annotations

import numpy as np

# The largest frame-to-frame change (/255, any channel) of a pixel still counted as static: the
# demo's 16 x 16 H.264 videos change their still background by up to about this much.
STATIC_THRESHOLD = 16


def _changes(videos: np.ndarray) -> np.ndarray:
  """(N, F, H, W, C) -> (N, F-1, H, W): |x_j - x_{j-1}| averaged over channels."""
  v = np.asarray(videos, np.float32)
  return np.abs(np.diff(v, axis=1)).mean(axis=-1)


def static_mask(real: np.ndarray, threshold: float = STATIC_THRESHOLD) -> np.ndarray:
  """(N, H, W) bool: pixels whose real frame-to-frame change never exceeds `threshold` (any channel)."""
  v = np.asarray(real, np.float32)
  return np.abs(np.diff(v, axis=1)).max(axis=(1, 4)) <= threshold


def frame_change(videos: np.ndarray) -> float:
  return float(_changes(videos).mean())


def static_change(videos: np.ndarray, mask: np.ndarray) -> float | None:
  """Mean change over the masked pixels (all frames); None when no pixel is static."""
  changes = _changes(videos)  # (N, F-1, H, W)
  weights = np.broadcast_to(mask[:, None], changes.shape)
  return float(changes[weights].mean()) if weights.any() else None


def noise_report(real: np.ndarray, samples: dict[str, np.ndarray]) -> dict:
  """{"static_fraction", "frame_change": {"real", name...}, "static_change": {...}, "static_ratio":
  {name: sample's static change / the real one}} for videos (N, F, H, W, 3) uint8."""
  mask = static_mask(real)
  videos = {"real": real, **samples}
  static = {name: static_change(v, mask) for name, v in videos.items()}
  floor = static["real"]
  return {
      "measure": f"mean |frame j - frame j-1| in /255; static_change: over the pixels where the real clip never "
                 f"changes by more than {STATIC_THRESHOLD}/255 (asva_jax.demo.noise)",
      "static_fraction": float(mask.mean()),
      "frame_change": {name: frame_change(v) for name, v in videos.items()},
      "static_change": static,
      "static_ratio": {name: (static[name] / floor if floor and static[name] is not None else None)
                       for name in samples},
  }
