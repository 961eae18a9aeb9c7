"""Audio longer than one 2-s window, animated whole: one window after another.

Two ways to chain windows (F frames per window at the run's frame rate r, `RunSpec.fps`: 6 fps
in the recipe, the rate the times below assume); the video has round(r · duration) frames (at
least F), frame n at time n/r s:
  continuous  window k starts at k·(F-1)/6 s and its frame 0 is the previous window's last
              frame (its final latent, handed over without a decode/encode round trip); each
              window adds F-1 new frames. No reset at the seams, but appearance can drift as
              windows compound.
  anchored    window k covers [2k, 2k + 2) s and every window starts from the input image; the
              windows are independent (sampled in batches). No drift, but the video jumps back
              to the image at every seam. Frames left over after the last whole window (an
              audio that does not fill a further window: 2.2 s, 5 s) come from one continuous
              window after it, so the video never ends on a jump back to the image.
A window's audio is the run's `audio_seconds` (2 s) from its frame 0's time (zeros past the end
of the track); the output keeps the whole audio, and the frames are cut to its length.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from asva_jax.pipeline import inputs
from asva_jax.pipeline.inputs import Clip, InputError
from asva_jax.pipeline.pipeline import num_frames, sample, sample_batched

MODES = ("continuous", "anchored")
DEFAULT_MODE = "anchored"


@dataclasses.dataclass(frozen=True)
class Window:
  """One sampled window: `start`, the time (s) of its frame 0 and of its audio; `continues`: its
  frame 0 is the previous window's last latent (else the input image)."""

  start: float
  continues: bool


def total_frames(duration: float, frames: int, fps: int = inputs.FPS) -> int:
  """Frames of the video of a `duration`-s audio: one per 1/fps s, at least one window."""
  return max(frames, int(round(duration * fps)))


def windows(duration: float, mode: str, frames: int, fps: int = inputs.FPS) -> list[Window]:
  """The windows that cover `duration` s of audio, in order."""
  if mode not in MODES:
    raise InputError(f"long-audio mode {mode!r}: choose one of {', '.join(MODES)}")
  total = total_frames(duration, frames, fps)
  if mode == "continuous":
    count = 1 + -(-(total - frames) // (frames - 1))
    return [Window(k * (frames - 1) / fps, k > 0) for k in range(count)]
  whole = total // frames
  out = [Window(k * frames / fps, False) for k in range(whole)]
  if total > whole * frames:  # the tail continues the last whole window from its last frame
    out.append(Window((whole * frames - 1) / fps, True))
  return out


def window_starts(duration: float, mode: str, frames: int, fps: int = inputs.FPS) -> list[float]:
  """Start times (s) of the windows that cover `duration` s of audio."""
  return [w.start for w in windows(duration, mode, frames, fps)]


def animate(models, image: np.ndarray, audio: np.ndarray, prompt: str, *, mode: str = DEFAULT_MODE,
            seed: int = 0, batch_size: int = 4, progress: bool = True, **options):
  """uint8 frames (N, H, W, 3) for the whole 16-kHz `audio`, and the window start times.

  N = round(duration · fps) frames (at least one window), at the frame rate of the models' run
  spec; every window samples with `seed`. `options` go to `pipeline.sample` (guidance, steps,
  scheduler).
  """
  from tqdm import tqdm
  duration = len(audio) / inputs.SAMPLE_RATE
  inputs.check_length(audio, "audio")
  f, fps, seconds = num_frames(models), int(models.spec.fps), float(models.spec.audio_seconds)
  plan = windows(duration, mode, f, fps)
  clips = [Clip(image, inputs.window(audio, w.start, seconds), prompt) for w in plan]
  fresh = [c for c, w in zip(clips, plan) if not w.continues]  # a prefix of the windows
  frames, latents = sample_batched(models, fresh, batch_size=batch_size, seeds=seed, progress=progress,
                                   return_latents=True, **options)
  parts, last = list(frames), latents[-1:, -1]
  later = clips[len(fresh):]
  for clip in tqdm(later, desc="windows", unit="window", disable=not progress or len(later) < 2):
    frames, latents = sample(models, [clip], seeds=seed, first_latents=last, return_latents=True, **options)
    parts.append(frames[0, 1:])
    last = latents[:, -1]
  video = np.concatenate(parts)
  return video[:total_frames(duration, f, fps)], [w.start for w in plan]


def seam_indices(starts: list[float], frames: int, total: int, fps: int = inputs.FPS) -> list[int]:
  """Output index of the first frame each window after the first adds (a seam lies just before it):
  the frame after the previous window's last one."""
  seams = [int(round(s * fps)) + frames for s in starts[:-1]]
  return [s for s in seams if s < total]


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
