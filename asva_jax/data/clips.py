"""Which frames and audio samples make a 2-s clip (docs/reference.md §6.6, §7.6, §8.3); pure numpy.

The frame rule is the original video clip loader's: walk the decoded frames whose
time is at most `start + duration + 1/(2 fps)`; keep a target time, initially
`start`; take the first frame at or after the target and then advance the
target by `1/fps` (accumulated, not recomputed); stop at `num_frames`; if fewer
were found, repeat the last one. Audio: the `duration * 16000` samples of the whole
16-kHz track from the one at time `start`. Times are the container's presentation
times (those of the frames); the track's first sample lies at `audio_start`, which is
not 0 when the audio stream starts later or earlier than the video, so the window
begins at track sample `floor((start - audio_start) * 16000)`.
"""

from __future__ import annotations

import math

import numpy as np

from asva_jax.constants import CLIP_SECONDS, FPS, NUM_FRAMES, SAMPLE_RATE


def select_frames(frame_times: np.ndarray, start: float, fps: int = FPS,
                  num_frames: int = NUM_FRAMES) -> np.ndarray:
  """Indices into `frame_times` (decode order) of the clip's frames, (num_frames,) int64.

  When no frame lies in the window (a start past the last frame) the last frame
  is used for every position; the original code fails there.
  """
  times = np.asarray(frame_times, np.float64)
  if times.size == 0:
    raise ValueError("select_frames: the video has no frames")
  step = 1.0 / fps
  limit = start + num_frames / fps + step / 2.0
  target = start
  chosen: list[int] = []
  for i, t in enumerate(times.tolist()):
    if t > limit:
      break
    if t >= target:
      chosen.append(i)
      target += step
      if len(chosen) == num_frames:
        break
  if not chosen:
    chosen = [len(times) - 1]
  chosen += [chosen[-1]] * (num_frames - len(chosen))
  return np.asarray(chosen, np.int64)


def random_start(rng: np.random.Generator, duration: float, clip_seconds: float = CLIP_SECONDS) -> float:
  """Training clip start: uniform in [0, duration - clip_seconds], 0 for a shorter video."""
  return max(0.0, float(rng.uniform(0.0, duration - clip_seconds)))


def uniform_starts(duration: float, num_clips: int = 3, clip_seconds: float = CLIP_SECONDS) -> np.ndarray:
  """Evaluation clip starts: the centre for one clip, else `linspace(0, duration - 2, k)`."""
  if num_clips == 1:
    return np.asarray([(duration - clip_seconds) / 2.0])
  return np.linspace(0.0, duration - clip_seconds, num_clips)


def audio_window(audio: np.ndarray, start: float, sample_rate: int = SAMPLE_RATE,
                 clip_seconds: float = CLIP_SECONDS, *, audio_start: float) -> np.ndarray:
  """The clip's samples of a whole mono track whose first sample lies at time `audio_start`.

  A clip starting before the audio does gets zeros in front (the original's packet
  selection finds no audio there either); near the end of the track it is shorter.
  """
  length = int(round(clip_seconds * sample_rate))
  begin = math.floor((start - audio_start) * sample_rate)
  if begin >= 0:
    return audio[begin:begin + length]
  pad = min(-begin, length)
  return np.concatenate([np.zeros(pad, audio.dtype), audio[:length - pad]])
