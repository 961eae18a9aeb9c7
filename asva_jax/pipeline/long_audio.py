"""Audio longer than one 2-s window, animated whole: one window after another.

Two ways to chain windows (F frames per window at 6 fps):
  continuous  window k starts at k·(F-1)/6 s and its frame 0 is the previous window's last
              frame (its final latent, handed over without a decode/encode round trip); each
              window adds F-1 new frames. No reset at the seams, but appearance can drift as
              windows compound.
  anchored    window k covers [2k, 2k + 2) s and every window starts from the input image; the
              windows are independent (sampled in batches). No drift, but the video jumps back
              to the image at every seam.
The output keeps the whole audio; frames are cut to the audio's length.
"""

from __future__ import annotations

import math

import numpy as np

from asva_jax.pipeline import inputs
from asva_jax.pipeline.inputs import Clip, InputError
from asva_jax.pipeline.pipeline import num_frames, sample, sample_batched

MODES = ("continuous", "anchored")
DEFAULT_MODE = "anchored"


def window_starts(duration: float, mode: str, frames: int, fps: int = inputs.FPS) -> list[float]:
  """Start times (s) of the windows that cover `duration` s of audio."""
  clip = frames / fps
  hop = clip if mode == "anchored" else (frames - 1) / fps
  extra = max(0.0, duration - clip - inputs.SHORT_AUDIO_SLACK_S)
  return [k * hop for k in range(1 + math.ceil(extra / hop - 1e-9))]


def animate(models, image: np.ndarray, audio: np.ndarray, prompt: str, *, mode: str = DEFAULT_MODE,
            seed: int = 0, batch_size: int = 4, progress: bool = True, **options):
  """uint8 frames (N, H, W, 3) for the whole 16-kHz `audio`, and the window start times.

  N = round(duration · 6) frames (at least one window).
  `options` go to `pipeline.sample` (guidance, steps, scheduler).
  """
  from tqdm import tqdm
  if mode not in MODES:
    raise InputError(f"long-audio mode {mode!r}: choose one of {', '.join(MODES)}")
  duration = len(audio) / inputs.SAMPLE_RATE
  inputs.check_length(audio, "audio")
  f = num_frames(models)
  starts = window_starts(duration, mode, f)
  clips = [Clip(image, inputs.window(audio, s, f / inputs.FPS), prompt) for s in starts]
  if mode == "anchored":
    frames = sample_batched(models, clips, batch_size=batch_size, seeds=seed, progress=progress, **options)
    video = frames.reshape((-1,) + frames.shape[2:])
  else:
    parts, last = [], None
    for k, clip in enumerate(tqdm(clips, desc="windows", unit="window", disable=not progress or len(clips) < 2)):
      frames, latents = sample(models, [clip], seeds=seed, first_latents=last, return_latents=True, **options)
      parts.append(frames[0] if k == 0 else frames[0, 1:])
      last = latents[:, -1]
    video = np.concatenate(parts)
  keep = max(f, int(round(duration * inputs.FPS)))
  return video[:keep], starts


def seam_indices(starts: list[float], mode: str, frames: int, total: int) -> list[int]:
  """Output index of the first frame of every window after the first (where a seam is crossed)."""
  step = frames if mode == "anchored" else frames - 1
  return [k * step for k in range(1, len(starts)) if k * step < total]


def seam_smoothness(video: np.ndarray, seams: list[int]) -> dict:
  """Mean squared frame difference (pixels in [0, 1]) across seams and inside windows."""
  x = np.asarray(video, np.float32) / 255.0
  diffs = np.mean(np.square(x[1:] - x[:-1]), axis=(1, 2, 3))  # diffs[i] is between frames i and i+1
  at_seam = np.zeros(len(diffs), bool)
  at_seam[[s - 1 for s in seams if 0 < s <= len(diffs)]] = True
  seam = float(diffs[at_seam].mean()) if at_seam.any() else float("nan")
  inside = float(diffs[~at_seam].mean())
  return {"seam": seam, "inside": inside, "ratio": seam / inside if inside > 0 else float("inf")}


def drift(video: np.ndarray, image: np.ndarray, seams: list[int]) -> list[float]:
  """Root-mean-square distance (pixels in [0, 1]) of each window's last frame to the input image."""
  ends = [s - 1 for s in seams] + [len(video) - 1]
  ref = np.asarray(image, np.float32) / 255.0
  return [float(np.sqrt(np.mean(np.square(np.asarray(video[e], np.float32) / 255.0 - ref)))) for e in ends]
