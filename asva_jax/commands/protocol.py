r"""The paper's table in one command: the evaluation protocol's clips of a test split, sampled, then scored.

    python -m asva_jax.eval.protocol --ckpt CKPT --data data/shards --models models/ \
        --audio_guidance 4.0 --out results/avsync15_ag4

The original's protocol (docs/reference.md §7.6, §9): for every video of the test split (shards from
`data_prep.build`), 3 uniformly placed 2-s clips, each animated from its first frame and its audio
at the run spec's frame size, 12 frames at 6 fps, seed 0 for every clip, PNDM 50 steps; then FID,
FVD, IA, IT, RelSync and AlignSync against the same clips of the real videos
(`asva_jax.eval.evaluate`). Writes, under --out:

  videos/<class>/<name>_clip-NN.mp4     the generated clips (kept; a rerun skips those that exist)
  protocol_settings.json                the settings the clips were made with (a rerun must match)
  metrics.json, metrics_clips.jsonl     the evaluation's summary and per-clip values
  protocol.json, table.md               the summary with the published values and the time per stage

A killed run continues where it stopped when started again with the same command. Every sampler
call is split over all of this machine's devices; on several hosts (`--distributed`, or
`--coordinator_address HOST:PORT --num_processes N --process_id I`, --out on a shared file system)
each host samples its share of the clips, then process 0 scores them all and writes the report.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from absl import app, flags

from asva_jax.commands import runner
from asva_jax.commands.train import define_distributed_flags, start_processes
from asva_jax.pipeline.jobs import SCHEDULERS, SampleOptions

PAPER_DATASETS = ("auto", "avsync15", "landscapes", "thegreatesthits", "none")


@dataclasses.dataclass(frozen=True)
class ProtocolOptions:
  """One protocol run: the sampling options (same names as `python -m asva_jax.sample`) and the rest."""
  sample: SampleOptions
  data: str
  models: str
  out: str
  split: str = "test"
  metrics: str = "fid,fvd,ia,it,relsync,alignsync"
  eval_batch_size: int = 8
  paper_dataset: str = "auto"
  progress: bool = True


def define_flags(fv: flags.FlagValues = flags.FLAGS) -> None:
  def string(name, help_string, **kwargs):
    flags.DEFINE_string(name, None, help_string, flag_values=fv, **kwargs)
  string("ckpt", "Converted checkpoint folder or training workdir.", required=True)
  flags.DEFINE_integer("step", None, "Training step of a workdir (default: the step the clips in --out were made "
                       "with, else the latest).", flag_values=fv)
  string("data", "Shards from data_prep.build holding the test split.", required=True)
  flags.DEFINE_string("split", "test", "Split of the shards to animate and score.", flag_values=fv)
  string("models", "Folder with the detector files (docs/evaluation.md).", required=True)
  string("out", "Output folder (clips, metrics, table); a rerun continues it.", required=True)
  flags.DEFINE_string("metrics", "fid,fvd,ia,it,relsync,alignsync", "Comma-separated metrics.", flag_values=fv)
  flags.DEFINE_float("audio_guidance", 4.0, "Audio classifier-free guidance scale (the paper: 1, 4 or 8).",
                     flag_values=fv)
  flags.DEFINE_float("text_guidance", 1.0, "Text classifier-free guidance scale (the paper: 1).", flag_values=fv)
  flags.DEFINE_integer("num_clips", 3, "Uniform 2-s clips per test video (the paper: 3).", flag_values=fv)
  flags.DEFINE_integer("steps", 50, "Sampler steps (PNDM: 50 steps = 51 UNet calls).", flag_values=fv)
  flags.DEFINE_enum("scheduler", "pndm", list(SCHEDULERS), "Sampler (docs/sampling.md).", flag_values=fv)
  flags.DEFINE_float("eta", 0.0, "DDIM eta.", flag_values=fv)
  flags.DEFINE_integer("seed", 0, "Seed of every clip (the original reseeds before each clip).", flag_values=fv)
  flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Compute dtype of the UNet and the VAE "
                    "(the paper's clips: float32).", flag_values=fv)
  flags.DEFINE_integer("batch_size", 4, "Clips per sampler call (rounded up to a multiple of the devices).",
                       flag_values=fv)
  flags.DEFINE_integer("eval_batch_size", 8, "Clips per evaluation network call.", flag_values=fv)
  flags.DEFINE_list("size", None, "Frame H,W (default: the frame size in the run spec of --ckpt).",
                    flag_values=fv)
  flags.DEFINE_enum("paper_dataset", "auto", list(PAPER_DATASETS),
                    "Whose published values to print beside ours (auto: the dataset the shards were built "
                    "from).", flag_values=fv)
  define_distributed_flags(fv)


def options(fv: flags.FlagValues = flags.FLAGS) -> ProtocolOptions:
  sample = SampleOptions(ckpt=fv.ckpt, step=fv.step, audio_guidance=fv.audio_guidance,
                         text_guidance=fv.text_guidance, num_clips=fv.num_clips, steps=fv.steps,
                         scheduler=fv.scheduler, eta=fv.eta, seed=fv.seed, dtype=fv.dtype,
                         batch_size=fv.batch_size, size=tuple(fv.size) if fv.size else None)
  return ProtocolOptions(sample=sample, data=fv.data, models=fv.models, out=fv.out, split=fv.split,
                         metrics=fv.metrics, eval_batch_size=fv.eval_batch_size, paper_dataset=fv.paper_dataset)


def _text(value) -> str:
  return value.decode() if isinstance(value, bytes) else str(value)


def _location(path: str) -> str:
  return path if "://" in path else os.path.abspath(path)


def read_split(data: str, split: str) -> tuple[object, list[dict], str | None]:
  """(source, [{key, prompt, duration}] per video, the dataset the shards were built from)."""
  from asva_jax.data.source import dataset_dir, open_split
  source = open_split(data, split)
  videos = []
  for i in range(len(source)):
    record = source[i]
    videos.append({"key": _text(record["key"]), "prompt": _text(record["prompt"]),
                   "duration": float(record["duration"])})
  build = dataset_dir(data) / f"build-{split}.json"
  dataset = json.loads(build.read_text()).get("dataset") if build.is_file() else None
  return source, videos, dataset


def record_clip(record: dict, start: float, size: tuple[int, int]):
  """The protocol's input of one clip: its first frame at `size`, its 2 s of audio, the prompt."""
  import numpy as np

  from asva_jax.data.clips import select_frames
  from asva_jax.data.features import audio_start, frame_times
  from asva_jax.data.transforms import decode_image
  from asva_jax.pipeline import inputs
  first = select_frames(frame_times(record), start)[0]
  image = decode_image(record["frames"][first])
  if image.shape[:2] != tuple(size):
    image = inputs.prepare_image(image, size)
  audio = inputs.window(np.asarray(record["audio"]), start, audio_start=audio_start(record))
  return inputs.Clip(image, audio, _text(record["prompt"]))


def generate(models, source, videos: list[dict], o: SampleOptions, size, out: str, progress: bool = True,
             process: tuple[int, int] | None = None) -> int:
  """Samples this process's share of the split's clips (`parallel.hosts.share` of the whole list, so
  the shares do not depend on which files exist) that have no file yet, a batch at a time over all
  of its devices, each clip written as soon as its batch is done; -> the number of clips sampled.
  `process`: (index, count) instead of this process's."""
  from tqdm import tqdm

  from asva_jax.data.clips import uniform_starts
  from asva_jax.eval.protocol.run_state import clip_paths
  from asva_jax.media.mp4 import write_video
  from asva_jax.parallel import hosts, sharding
  from asva_jax.pipeline.pipeline import sample_batched
  every = [(index, float(start), path) for index, video in enumerate(videos)
           for start, path in zip(uniform_starts(video["duration"], o.num_clips),
                                  clip_paths(out, video["key"], o.num_clips))]
  mine = hosts.share(every, *(process or ()))
  todo = [item for item in mine if not item[2].exists()]
  bar = tqdm(total=len(mine), initial=len(mine) - len(todo), desc="generating", unit="clip",
             disable=not progress)
  mesh = sharding.data_mesh()
  per_call = sharding.padded_size(o.batch_size, mesh)  # every device gets as many clips
  options = dict(audio_guidance=o.audio_guidance, text_guidance=o.text_guidance,
                 num_inference_steps=o.steps, scheduler=o.scheduler, eta=o.eta)
  batch, record, current = [], None, None

  def flush():
    clips = [c for c, _ in batch]
    clips += [clips[-1]] * (per_call - len(clips))  # one shape for every call: one compilation
    frames = sample_batched(models, clips, batch_size=per_call, seeds=o.seed, progress=False, mesh=mesh,
                            **options)
    for (clip, path), video in zip(batch, frames):
      write_video(path, video, clip.audio, fps=models.spec.fps)
    bar.update(len(batch))
    batch.clear()

  for index, start, path in todo:
    if index != current:
      record, current = source[index], index
    batch.append((record_clip(record, start, size), path))
    if len(batch) == per_call:
      flush()
  if batch:
    flush()
  bar.close()
  return len(todo)


def check_models_folder(models: str, chosen) -> None:
  """Every detector file the metrics need is there, before hours of sampling."""
  from asva_jax.eval.evaluate import EvaluationError, model_path, needed_models
  folder = Path(models)
  if not folder.is_dir():
    raise EvaluationError(f"--models {folder}: no such folder")
  for kind in sorted(needed_models(chosen)):
    model_path(folder, kind)


def check_inputs(p: ProtocolOptions) -> tuple[str, ...]:
  """The checks that need no loading (flags, the checkpoint's and the detectors' folders); -> the metrics."""
  from asva_jax.component_folders import CheckpointError
  from asva_jax.eval.evaluate import parse_metrics
  from asva_jax.eval.protocol.run_state import ProtocolError
  from asva_jax.schedulers import make_plan
  from asva_jax.storage import as_path
  o = p.sample
  if o.num_clips < 1 or o.batch_size < 1 or p.eval_batch_size < 1:
    raise ProtocolError(f"--num_clips ({o.num_clips}), --batch_size ({o.batch_size}) and --eval_batch_size "
                        f"({p.eval_batch_size}) must be >= 1")
  chosen = parse_metrics(p.metrics)
  make_plan(o.scheduler, o.steps, eta=o.eta)  # bad step counts fail before loading
  if not as_path(o.ckpt).is_dir():
    raise CheckpointError(f"--ckpt {o.ckpt}: no such checkpoint folder or training workdir")
  check_models_folder(p.models, chosen)
  if "://" in p.out:
    raise ProtocolError(f"--out {p.out}: give a local folder (the clips are written as local mp4 files)")
  if Path(p.out).exists() and not Path(p.out).is_dir():
    raise ProtocolError(f"--out {p.out}: exists and is not a folder")
  return chosen


def _all_processes(name: str, value: int = 0) -> int:
  """A barrier of every process (each waits until all got here); -> the sum of their `value`s."""
  import jax
  if jax.process_count() == 1:
    return value
  import numpy as np
  from jax.experimental import multihost_utils
  return int(np.sum(multihost_utils.process_allgather(np.int64(value))))


def run_protocol(p: ProtocolOptions) -> dict | None:
  """The whole protocol (see the module docstring); returns the summary written to protocol.json
  (None on processes other than 0: every process samples its share, process 0 scores and reports)."""
  import jax
  import jax.numpy as jnp

  from asva_jax.eval.evaluate import evaluate, load_detectors
  from asva_jax.eval.protocol.report import StageTimes
  from asva_jax.eval.protocol.run_state import VIDEOS, check_settings, read_settings
  from asva_jax.pipeline.jobs import frame_size
  from asva_jax.pipeline.loading import load_models
  o = p.sample
  chosen = check_inputs(p)
  out = Path(p.out)
  times = StageTimes()
  with times("read split"):
    source, videos, built_from = read_split(p.data, p.split)
  recorded = read_settings(out) or {}
  step = o.step
  if step is None and recorded.get("ckpt") == _location(o.ckpt):
    step = recorded.get("step")  # a workdir's clips continue with their step, not a newer one
  with times("load checkpoint"):
    models = load_models(o.ckpt, step, dtype=jnp.dtype(o.dtype))
    size = frame_size(models, o.size)
    for prompt in sorted({v["prompt"] for v in videos}):
      models.text_encodings[prompt]  # unknown categories fail before sampling
  settings = {"ckpt": _location(o.ckpt), "step": models.step, "data": _location(p.data), "split": p.split,
              "num_clips": o.num_clips, "size": list(size), "audio_guidance": o.audio_guidance,
              "text_guidance": o.text_guidance, "scheduler": o.scheduler, "steps": o.steps, "eta": o.eta,
              "seed": o.seed, "dtype": o.dtype}
  check_settings(out, settings)
  with times("generate"):
    sampled = generate(models, source, videos, o, size, str(out), p.progress)
    sampled = _all_processes("generated", sampled)  # every clip is written before any is scored
  del models
  result = None
  if jax.process_index() == 0:
    with times("load detectors"):
      detectors = load_detectors(p.models, chosen)
    with times("evaluate"):
      summary = evaluate(out / VIDEOS, p.data, p.models, out / "metrics.json", chosen, num_clips=o.num_clips,
                         batch_size=p.eval_batch_size, split=p.split, progress=p.progress, detectors=detectors)
    dataset = {"auto": built_from, "none": None}.get(p.paper_dataset, p.paper_dataset)
    result = report(out, settings, summary, dataset, sampled, times)
  _all_processes("reported")
  return result


def report(out: Path, settings: dict, summary: dict, dataset: str | None, sampled: int, times) -> dict:
  """Writes protocol.json and table.md (this run beside the published row) and prints them."""
  from asva_jax.eval.evaluate import write_atomic
  from asva_jax.eval.protocol import published as paper
  from asva_jax.eval.protocol.report import markdown
  ag, tg = settings["audio_guidance"], settings["text_guidance"]
  row = paper.published(dataset, ag, tg)
  step_text = "" if settings["step"] is None else f" step {settings['step']}"
  label = f"asva-jax ({Path(settings['ckpt']).name}{step_text}, AG {ag:g}, TG {tg:g})"
  table = markdown(summary, label, row, f"AVSyncD published ({dataset}, {paper.SOURCE})")
  result = {"settings": settings, "dataset": dataset,
            "metrics": {k: v for k, v in summary.items() if isinstance(v, float)},
            "num_videos": summary["num_videos"], "num_clips": summary["num_clips"],
            "clips_sampled": sampled, "clips_reused": summary["num_clips"] - sampled,
            "published": row, "published_source": paper.SOURCE if row else None,
            "seconds": {k: round(v, 3) for k, v in times.seconds.items()}}
  write_atomic(out / "protocol.json", json.dumps(result, indent=2) + "\n")
  write_atomic(out / "table.md", table)
  print(table, end="")
  if row is None:
    print(f"(no published values for dataset {dataset!r} at audio guidance {ag:g}, text guidance {tg:g})")
  print(f"{sampled} clips sampled, {result['clips_reused']} already there")
  print(times.summary())
  print(f"wrote {out / 'protocol.json'}, {out / 'table.md'}")
  return result


def main(argv, fv: flags.FlagValues = flags.FLAGS) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  start_processes(fv)
  run_protocol(options(fv))


def run(argv=None) -> None:
  runner.run(main, argv, define_flags=define_flags)


if __name__ == "__main__":
  run()
