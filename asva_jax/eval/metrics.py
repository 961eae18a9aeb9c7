"""The evaluation's per-clip metrics and their summaries, as `eval.py` computes them (docs/reference.md §9.2, §9.5).

Pure functions over detector outputs: AVSync classifier scores s (per clip) and ImageBind
image-audio / image-text cosine similarities (per frame). Frame 0 of a generated clip is
the conditioning image, so IA, IT and AlignSync use frames 1..F-1 only.

  RelSync   = sigmoid(s_gen - s_ref)   (eval.py writes exp(s_gen) / (exp(s_ref) + exp(s_gen)),
              which overflows for scores above ~88; equal wherever that one is finite)
  AlignProb = mean over k >= 1 of sigmoid(IA(gen frame k, gen audio) - IA(ref frame 0, ref audio))
  AlignSync = AlignProb * RelSync

Summaries are the mean and the unbiased standard deviation over clips. The standalone
script's variant (`compute_alignsync`: reference frame 0 scored with the *generated*
audio, reference score s(gen audio, ref video)) is the same formula with other inputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

PER_CLIP = ("IA", "IT", "RelSync", "AlignSync")


def sigmoid(x) -> np.ndarray:
  x = np.asarray(x, np.float64)
  return np.exp(-np.logaddexp(0.0, -x))


def relsync(score_gen, score_ref) -> np.ndarray:
  """(clips,) RelSync: the classifier's preference for the generated clip over the reference."""
  return sigmoid(np.asarray(score_gen, np.float64) - np.asarray(score_ref, np.float64))


def frame_mean(sims) -> np.ndarray:
  """(clips, frames) similarities -> (clips,) mean over frames 1..F-1 (frame 0 is the given image)."""
  sims = np.asarray(sims, np.float64)
  return sims[:, 1:].mean(axis=1)


def align_prob(ia_gen, ia_ref_first) -> np.ndarray:
  """(clips,) AlignProb from IA of every generated frame (clips, F) and of the reference's frame 0 (clips,)."""
  ia_gen = np.asarray(ia_gen, np.float64)[:, 1:]
  ref = np.asarray(ia_ref_first, np.float64).reshape(-1, 1)
  return sigmoid(ia_gen - ref).mean(axis=1)


def alignsync(ia_gen, ia_ref_first, score_gen, score_ref) -> np.ndarray:
  return align_prob(ia_gen, ia_ref_first) * relsync(score_gen, score_ref)


def mean_std(values) -> tuple[float, float]:
  """Mean and unbiased standard deviation (torch's `std()`; NaN for a single clip, as torch)."""
  values = np.asarray(values, np.float64)
  std = float(values.std(ddof=1)) if values.size > 1 else float("nan")
  return float(values.mean()), std


def per_clip(ia_gen=None, it_gen=None, score_gen=None, score_ref=None, ia_ref_first=None
             ) -> dict[str, np.ndarray]:
  """The per-clip values of whatever metrics the given inputs allow: IA, IT (frames 1..F-1),
  RelSync, AlignSync (needs all of IA and the scores)."""
  out = {}
  if ia_gen is not None:
    out["IA"] = frame_mean(ia_gen)
  if it_gen is not None:
    out["IT"] = frame_mean(it_gen)
  if score_gen is not None and score_ref is not None:
    out["RelSync"] = relsync(score_gen, score_ref)
    if ia_gen is not None and ia_ref_first is not None:
      out["AlignSync"] = align_prob(ia_gen, ia_ref_first) * out["RelSync"]
  return out


def summarize(clip_values: Mapping[str, np.ndarray]) -> dict[str, float]:
  """`{name}_mean` and `{name}_std` for each per-clip metric, in eval.py's key names."""
  out = {}
  for name in PER_CLIP:
    if name in clip_values:
      out[f"{name}_mean"], out[f"{name}_std"] = mean_std(clip_values[name])
  return out


def original_pairing(video_names: Sequence[str], categories: Sequence[str]
                     ) -> tuple[list[str], list[str]]:
  """The (video, category) pairs `eval.py` evaluates: it sorts the video names but not the
  categories, so with an unsorted list the i-th sorted video gets the i-th *given* category
  (harmless for the released, sorted test lists; reproduced for parity)."""
  if len(video_names) != len(categories):
    raise ValueError(f"original_pairing: {len(video_names)} videos but {len(categories)} categories")
  return sorted(video_names), list(categories)


def generated_clip_name(video_name: str, clip: int) -> str:
  """The sampler's file name of clip `clip` of a reference video (docs/reference.md §7.5):
  `class/name.mp4` -> `class/name_clip-01.mp4`."""
  stem = video_name[:-len(".mp4")] if video_name.endswith(".mp4") else video_name
  return f"{stem}_clip-{clip:02d}.mp4"
