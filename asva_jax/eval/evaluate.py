"""Evaluating a folder of generated clips against the reference clips (what `python -m asva_jax.eval` runs).

Steps, as the original `evaluate_generation_results` (docs/reference.md §9.1):
1. pair each generated clip `<video>_clip-NN.mp4` with clip NN of reference video `<video>.mp4`;
2. features of every reference clip, videos in sorted name order, then of every generated clip
   in the same order, in batches through the jitted networks (`detectors.Detectors`), each batch
   split over this process's devices with the networks replicated (`parallel.sharding.data_mesh`);
3. the metrics (`metrics`, `frechet`), a summary JSON and one JSON line per generated clip.

`--models DIR` layout (first name found wins; only the networks of the asked metrics are read):

  inception.safetensors | pt_inception-2015-12-05-6726825d.pth      fid
  i3d_torchscript.pt | i3d.safetensors | i3d.pth                      fvd
  imagebind_huge.pth | imagebind.safetensors                          ia, it, alignsync
  imagebind_dims.json        (optional) ImageBind sizes when not Huge, e.g. {"vision_num_heads": 4}
  bpe_simple_vocab_16e6.txt.gz                                        it (ImageBind's BPE vocabulary)
  avsync/{audio_encoder,video_encoder,head}/diffusion_pytorch_model.{safetensors,bin}
                             the original's checkpoint-40000/modules folder   relsync, alignsync
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from asva_jax.errors import AsvaError
from asva_jax.eval import frechet, metrics
from asva_jax.eval.clip_reader import ClipError, generated_files, open_references, read_generated

METRICS = ("fid", "fvd", "ia", "it", "relsync", "alignsync")
MODEL_FILES = {
    "inception": ("inception.safetensors", "pt_inception-2015-12-05-6726825d.pth"),
    "i3d": ("i3d_torchscript.pt", "i3d.safetensors", "i3d.pth"),
    "imagebind": ("imagebind_huge.pth", "imagebind.safetensors"),
    "vocab": ("bpe_simple_vocab_16e6.txt.gz",),
    "avsync": ("avsync",),
}
IMAGEBIND_DIMS = "imagebind_dims.json"


class EvaluationError(AsvaError, ValueError):
  """Bad evaluation input: metrics, model folder, or clips that do not pair up."""


def parse_metrics(text: str | Sequence[str]) -> tuple[str, ...]:
  names = [m.strip().lower() for m in (text.split(",") if isinstance(text, str) else text) if m.strip()]
  unknown = [m for m in names if m not in METRICS]
  if unknown or not names:
    raise EvaluationError(f"--metrics: unknown {', '.join(unknown) or '(none given)'}; choose from "
                          f"{','.join(METRICS)}")
  return tuple(m for m in METRICS if m in names)


def needed_models(chosen: Iterable[str]) -> set[str]:
  chosen = set(chosen)
  need = set()
  if "fid" in chosen:
    need.add("inception")
  if "fvd" in chosen:
    need.add("i3d")
  if chosen & {"ia", "it", "alignsync"}:
    need.add("imagebind")
  if "it" in chosen:
    need.add("vocab")
  if chosen & {"relsync", "alignsync"}:
    need.add("avsync")
  return need


def model_path(models_dir: Path, kind: str) -> Path:
  for name in MODEL_FILES[kind]:
    if (models_dir / name).exists():
      return models_dir / name
  raise EvaluationError(f"--models {models_dir}: no {kind} file (looked for {', '.join(MODEL_FILES[kind])}); "
                        f"see docs/evaluation.md for the folder layout")


def load_detectors(models_dir: str | os.PathLike, chosen: Sequence[str]):
  """The networks the chosen metrics need, from the `--models` folder."""
  from asva_jax.eval.detectors import Detectors
  models_dir = Path(models_dir)
  if not models_dir.is_dir():
    raise EvaluationError(f"--models {models_dir}: no such folder")
  need = needed_models(chosen)
  paths = {kind: model_path(models_dir, kind) for kind in sorted(need)}
  det = Detectors()
  if "inception" in need:
    from asva_jax.eval.inception import load_inception
    det.inception = load_inception(paths["inception"])
  if "i3d" in need:
    from asva_jax.eval.i3d import load_i3d
    det.i3d = load_i3d(paths["i3d"])
  if "imagebind" in need:
    from asva_jax.eval.imagebind import load_imagebind
    dims = {}
    if (models_dir / IMAGEBIND_DIMS).is_file():
      try:
        dims = json.loads((models_dir / IMAGEBIND_DIMS).read_text())
      except json.JSONDecodeError as e:
        raise EvaluationError(f"{models_dir / IMAGEBIND_DIMS}: not valid JSON ({e})") from e
    det.imagebind = load_imagebind(paths["imagebind"], vocab_path=paths.get("vocab"), **dims)
  if "avsync" in need:
    from asva_jax.eval.avsync_classifier import load_avsync_classifier
    avsync = paths["avsync"]
    det.avsync = load_avsync_classifier(avsync / "modules" if (avsync / "modules").is_dir() else avsync)
  return det


@dataclasses.dataclass
class Pairing:
  videos: list[str]                 # reference video names, sorted (eval.py's order)
  categories: list[str]             # the IT text of each video
  generated: dict[str, dict[int, Path]]
  num_clips: int

  def clip_names(self) -> list[tuple[str, int]]:
    return [(v, k) for v in self.videos for k in range(self.num_clips)]


def pair_clips(generated: dict[str, dict[int, Path]], references, num_clips: int, *,
               partial: bool = False, original_category_pairing: bool = False) -> Pairing:
  """Checks that every generated clip has its reference and every video all its clips."""
  for video, clips in generated.items():
    if video not in references.videos:
      first = next(iter(clips.values()))
      raise ClipError(f"{first}: no reference video {video} in --reference (names must match the "
                      f"reference's class/name.mp4 paths)")
    missing = sorted(set(range(num_clips)) - set(clips))
    extra = sorted(set(clips) - set(range(num_clips)))
    if missing or extra:
      what = (f"missing clip(s) {', '.join(map(str, missing))}" if missing else
              f"clip index(es) {', '.join(map(str, extra))} beyond --num_clips={num_clips}")
      raise ClipError(f"{video}: {what} among the generated files (expected "
                      f"{metrics.generated_clip_name(video, 0)} ... clip-{num_clips - 1:02d})")
  ref_order = sorted(references.videos.values(), key=lambda r: r.index)
  uncovered = [r.name for r in ref_order if r.name not in generated]
  if uncovered and not partial:
    raise ClipError(f"--generated: {len(uncovered)} reference video(s) have no generated clips (first: "
                    f"{uncovered[0]}); generate them, or pass --partial to evaluate only the covered ones")
  ref_order = [r for r in ref_order if r.name in generated]
  names = [r.name for r in ref_order]
  cats = [r.category for r in ref_order]
  if original_category_pairing:
    videos, cats = metrics.original_pairing(names, cats)
  else:
    pairs = sorted(zip(names, cats))
    videos, cats = [p[0] for p in pairs], [p[1] for p in pairs]
  return Pairing(videos, cats, generated, num_clips)


def _batches(items: list, size: int):
  for i in range(0, len(items), size):
    yield items[i:i + size]


def _stack(clips, batch_size: int, mesh):
  """(video (B, F, H, W, 3) in [0, 1], mel (B, 128, 204)), padded to `batch_size` by repeating the
  last clip so that every batch has one shape (one compilation), split over the mesh's devices."""
  from asva_jax.parallel.sharding import on_batch
  clips = list(clips) + [clips[-1]] * (batch_size - len(clips))
  video = np.stack([c.video for c in clips]).astype(np.float32) / 255.0
  return on_batch(video, mesh), on_batch(np.stack([c.mel for c in clips]).astype(np.float32), mesh)


def _collect(parts: list[dict], n: int) -> dict[str, np.ndarray]:
  return {k: np.concatenate([p[k] for p in parts])[:n] for k in parts[0]} if parts else {}


def compute_features(pairing: Pairing, references, detectors, chosen: Sequence[str], batch_size: int,
                     progress: bool = True, *, mesh=None) -> tuple[dict, dict]:
  """Per-clip features of the reference and of the generated clips, in `pairing.clip_names()` order.

  Each batch of `batch_size` clips (rounded up to a multiple of the devices) is split over `mesh`
  (default: all of this process's devices), the networks replicated on it (in place); a clip's
  features do not depend on its batch, so the metrics equal a one-device run.
  """
  from tqdm import tqdm
  from asva_jax.eval.detectors import Detectors
  from asva_jax.parallel import sharding
  mesh = sharding.data_mesh() if mesh is None else mesh
  batch_size = sharding.padded_size(batch_size, mesh)
  for network in (detectors.inception, detectors.i3d, detectors.imagebind, detectors.avsync):
    if network is not None:
      sharding.replicate(network, mesh)
  chosen = set(chosen)
  names = pairing.clip_names()
  first = read_generated(pairing.generated[names[0][0]][names[0][1]])
  size = first.video.shape[1:3]
  alignsync = "alignsync" in chosen
  ref_det = Detectors(inception=detectors.inception, i3d=detectors.i3d,
                      imagebind=detectors.imagebind if alignsync else None, avsync=detectors.avsync)
  bar = tqdm(total=2 * len(names), desc="evaluating clips", unit="clip", disable=not progress)

  def reference_clips():
    for video in pairing.videos:
      yield from references.clips(video, pairing.num_clips, size)

  ref_parts, gen_parts, batch = [], [], []
  for clip in reference_clips():
    batch.append(clip)
    if len(batch) == batch_size:
      ref_parts.append(ref_det.features(*_stack(batch, batch_size, mesh), first_frame_only=True))
      bar.update(len(batch))
      batch = []
  if batch:
    ref_parts.append(ref_det.features(*_stack(batch, batch_size, mesh), first_frame_only=True))
    bar.update(len(batch))

  text = None
  if "it" in chosen:
    by_category = detectors.text_embeddings(pairing.categories)
    per_video = dict(zip(pairing.videos, pairing.categories))
    text = np.stack([by_category[per_video[v]] for v, _ in names])
  for start in range(0, len(names), batch_size):
    part = names[start:start + batch_size]
    clips = []
    for video, k in part:
      clip = read_generated(pairing.generated[video][k])
      if clip.video.shape[1:3] != size:
        raise ClipError(f"{pairing.generated[video][k]}: frames of {clip.video.shape[1:3]}, but the first "
                        f"generated clip has {tuple(size)}; all clips must have one size")
      clips.append(clip)
    emb = None
    if text is not None:
      emb = text[start:start + batch_size]
      emb = sharding.on_batch(np.concatenate([emb, np.repeat(emb[-1:], batch_size - len(emb), 0)]), mesh)
    gen_parts.append(detectors.features(*_stack(clips, batch_size, mesh), text_emb=emb))
    bar.update(len(part))
  bar.close()
  return _collect(ref_parts, len(names)), _collect(gen_parts, len(names))


def compute_metrics(ref: dict, gen: dict, chosen: Sequence[str]) -> tuple[dict, dict]:
  """(summary, per-clip values) of the chosen metrics from the features."""
  chosen = set(chosen)
  clips = metrics.per_clip(
      ia_gen=gen.get("ia") if chosen & {"ia", "alignsync"} else None,
      it_gen=gen.get("it") if "it" in chosen else None,
      score_gen=gen.get("avsync"), score_ref=ref.get("avsync"),
      ia_ref_first=ref["ia"][:, 0] if "ia" in ref else None)
  keep = {"ia": "IA", "it": "IT", "relsync": "RelSync", "alignsync": "AlignSync"}
  clips = {v: clips[v] for k, v in keep.items() if k in chosen}
  summary = {}
  if "fid" in chosen:
    summary["FID"] = frechet.fid(gen["fid"], ref["fid"])
  if "fvd" in chosen:
    summary["FVD"] = frechet.fvd(gen["fvd"], ref["fvd"])
  summary.update(metrics.summarize(clips))
  return summary, clips


def write_atomic(path: Path, text: str) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(path.name + ".tmp")
  tmp.write_text(text)
  os.replace(tmp, path)


def clips_path(out: Path) -> Path:
  """The per-clip JSONL beside the summary: metrics.json -> metrics_clips.jsonl."""
  return out.with_name(out.stem + "_clips.jsonl")


def evaluate(generated: str | os.PathLike, reference: str | os.PathLike, models: str | os.PathLike,
             out: str | os.PathLike, chosen: str | Sequence[str] = METRICS, *, num_clips: int = 3,
             batch_size: int = 8, split: str = "test", category: str = "hitting with a stick",
             partial: bool = False, original_category_pairing: bool = False, progress: bool = True,
             detectors=None, mesh=None) -> dict:
  """The whole evaluation; writes `out` (summary) and its per-clip JSONL; returns the summary.

  `detectors` may be given already loaded (a training loop evaluating its samples repeatedly).
  mesh: the devices the networks run on (`parallel.sharding.data_mesh`; default all of this process's).
  """
  chosen = parse_metrics(chosen)
  if batch_size < 1 or num_clips < 1:
    raise EvaluationError(f"--batch_size ({batch_size}) and --num_clips ({num_clips}) must be >= 1")
  out = Path(out)
  files = generated_files(generated)
  references = open_references(reference, split, category)
  pairing = pair_clips(files, references, num_clips, partial=partial,
                       original_category_pairing=original_category_pairing)
  if "fid" in chosen or "fvd" in chosen:
    if len(pairing.videos) * num_clips < 2:
      raise EvaluationError("fid/fvd need at least 2 clips")
  detectors = detectors or load_detectors(models, chosen)
  ref, gen = compute_features(pairing, references, detectors, chosen, batch_size, progress, mesh=mesh)
  summary, per_clip = compute_metrics(ref, gen, chosen)
  result = {"generated": str(generated), "reference": str(reference), "metrics": list(chosen),
            "num_videos": len(pairing.videos), "num_clips_per_video": num_clips,
            "num_clips": len(pairing.videos) * num_clips, **summary}
  lines = []
  categories = dict(zip(pairing.videos, pairing.categories))
  for i, (video, k) in enumerate(pairing.clip_names()):
    record = {"clip": metrics.generated_clip_name(video, k), "video": video, "category": categories[video]}
    record.update({name: float(values[i]) for name, values in per_clip.items()})
    if "avsync" in gen:
      record["avsync_score"] = float(gen["avsync"][i])
      record["reference_avsync_score"] = float(ref["avsync"][i])
    lines.append(json.dumps(record))
  write_atomic(clips_path(out), "\n".join(lines) + "\n")
  write_atomic(out, json.dumps(result, indent=2) + "\n")
  return result
