"""Sampling jobs: the plain function behind `python -m asva_jax.sample` (asva_jax/commands/sample.py).

A job is one image (or video) with its audio and category, written to one mp4 (several with
`num_clips`), or a row of a --jobs CSV. `run_jobs` reads and checks every job's files before
any model is loaded (bad input fails fast), then samples the 2-s clips in batches and the
long audios window after window.

Devices and hosts: every batch is split over this process's devices (`pipeline.sample_batched`);
with several processes (`--distributed`, `--coordinator_address`; `parallel.hosts`) each takes a
contiguous share of the clips and of the long audios and writes what it made, so no clip is made
twice. Every host reads and checks all jobs, so bad input fails on each of them alike.
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from asva_jax.constants import SAMPLE_RATE
from asva_jax.errors import AsvaError

SCHEDULERS = ("pndm", "plms", "pndm-eps", "plms-eps", "ddim", "ddpm", "dpm++2m")
LONG_AUDIO_MODES = ("anchored", "continuous")


@dataclasses.dataclass(frozen=True)
class SampleOptions:
  """One sampling run (the flags of `python -m asva_jax.sample`, same names)."""
  ckpt: str
  step: int | None = None
  image: str | None = None
  audio: str | None = None
  video: str | None = None
  category: str | None = None
  audio_guidance: float = 4.0
  text_guidance: float = 1.0
  out: str | None = None
  start: float | None = None
  num_clips: int | None = None
  steps: int = 50
  scheduler: str = "pndm"
  eta: float = 0.0
  seed: int = 0
  dtype: str = "float32"
  gif: bool = False
  jobs: str | None = None
  batch_size: int = 4
  size: tuple[str, ...] | None = None
  long_audio: str = "anchored"


class JobError(AsvaError, ValueError):
  """A malformed --jobs file or conflicting flags."""


def frame_size(models, size=None) -> tuple[int, int]:
  """`size` (H,W strings, the --size flag) or the frame size in the run spec of the checkpoint."""
  if size:
    try:
      h, w = (int(v) for v in size)
    except ValueError as e:
      raise JobError(f"--size {','.join(size)}: expected H,W") from e
    return h, w
  return tuple(models.spec.frame_size)


def read_jobs(path: str) -> list[dict]:
  path = Path(path)
  if not path.is_file():
    raise JobError(f"--jobs {path}: no such file")
  with open(path, newline="") as f:
    rows = list(csv.DictReader(f))
  required = {"image", "audio", "category", "out"}
  if not rows or not required <= set(rows[0]):
    raise JobError(f"--jobs {path}: needs a header with columns {', '.join(sorted(required))} and rows")
  for i, row in enumerate(rows, 2):
    empty = [k for k in required if not (row.get(k) or "").strip()]
    if empty:
      raise JobError(f"--jobs {path}: line {i} has no {', '.join(sorted(empty))}")
  return rows


def single_job(o: SampleOptions) -> dict:
  if o.jobs:
    return {}
  if not o.out or not o.category:
    raise JobError("--out and --category are required (or give --jobs FILE.csv)")
  if bool(o.video) == bool(o.image or o.audio):
    raise JobError("give either --video, or --image and --audio")
  if not o.video and not (o.image and o.audio):
    raise JobError("--image and --audio go together")
  return {"image": o.image, "audio": o.audio, "video": o.video, "category": o.category,
          "out": o.out, "start": o.start, "num_clips": o.num_clips}


def read_job(job: dict) -> dict:
  """Reads and checks a job's files (before any model is loaded, so bad input fails fast)."""
  from asva_jax.pipeline import inputs
  start = job.get("start")
  job = dict(job, start=None if start in (None, "") else float(start))
  if job.get("video"):
    job["track"], job["t0"] = inputs.load_audio_track(job["video"])
    job["source"] = job["video"]
  else:
    job["raw_image"] = inputs.load_image(job["image"])
    job["track"], _ = inputs.load_audio_track(job["audio"])
    job["t0"] = 0.0  # an audio file's times count from its first sample
    job["source"] = job["audio"]
  inputs.check_length(job["track"], job["source"])
  return job


def plan_job(job: dict, size) -> tuple[list, list, dict | None]:
  """-> (clips, [(out path, audio window)]) for 2-s clips, or a long-audio task."""
  from asva_jax.pipeline import inputs
  audio, t0, start, num_clips = job["track"], job["t0"], job["start"], job.get("num_clips")
  image = None if job.get("video") else inputs.prepare_image(job["raw_image"], size)
  duration = t0 + len(audio) / inputs.SAMPLE_RATE
  out = Path(job["out"])
  if start is None and num_clips is None:
    first = max(t0, 0.0)
    whole = inputs.window(audio, first, duration - first, audio_start=t0)
    if len(whole) > (inputs.CLIP_SECONDS + inputs.SHORT_AUDIO_SLACK_S) * inputs.SAMPLE_RATE:
      if job.get("video"):
        image = inputs.video_first_frames(job["video"], [first], size)[0]
      return [], [], {"image": image, "audio": whole, "prompt": job["category"], "out": out}
    start = first
  starts = inputs.clip_starts(duration, num_clips or 1, start)
  images = inputs.video_first_frames(job["video"], starts, size) if job.get("video") else [image] * len(starts)
  clips, outs = [], []
  for k, (s, im) in enumerate(zip(starts, images)):
    a = inputs.window(audio, s, audio_start=t0)
    clips.append(inputs.Clip(im, a, job["category"]))
    name = out if len(starts) == 1 else out.with_name(f"{out.stem}_clip-{k:02d}{out.suffix or '.mp4'}")
    outs.append((name, a))
  return clips, outs, None


def write(path: Path, frames: np.ndarray, audio: np.ndarray, fps: int, gif: bool = False) -> None:
  from asva_jax.media.gif import write_gif
  from asva_jax.media.mp4 import write_video
  write_video(path, frames, audio, fps=fps)
  if gif:
    write_gif(path.with_suffix(".gif"), frames, fps=fps)
  print(f"wrote {path} ({len(frames)} frames, {len(audio) / SAMPLE_RATE:.2f} s audio)")


def run_jobs(o: SampleOptions, *, mesh=None) -> None:
  """Samples this process's share of every job of `o` (one from the flags, or the rows of `o.jobs`)
  and writes its videos. mesh: the devices to sample on (default: all of this process's)."""
  from asva_jax.parallel import hosts, sharding
  from asva_jax.pipeline import loading as models_lib, long_audio, pipeline
  if o.batch_size < 1:
    raise JobError(f"--batch_size {o.batch_size}: must be >= 1")
  jobs = read_jobs(o.jobs) if o.jobs else [single_job(o)]
  options = dict(audio_guidance=o.audio_guidance, text_guidance=o.text_guidance,
                 num_inference_steps=o.steps, scheduler=o.scheduler, eta=o.eta)
  from asva_jax.schedulers import make_plan
  make_plan(o.scheduler, o.steps, eta=o.eta)  # bad step counts fail before loading
  jobs = [read_job(job) for job in jobs]
  models = models_lib.load_models(o.ckpt, o.step, dtype=jnp.dtype(o.dtype))
  size = frame_size(models, o.size)
  clips, outs, long_tasks = [], [], []
  for job in jobs:
    c, out, task = plan_job(job, size)
    clips += c
    outs += out
    if task:
      long_tasks.append(task)
  for prompt in {c.prompt for c in clips} | {t["prompt"] for t in long_tasks}:
    models.text_encodings[prompt]  # unknown categories fail before sampling
  mesh = sharding.data_mesh() if mesh is None else mesh
  mine = hosts.share(range(len(clips)))
  long_tasks = hosts.share(long_tasks)
  print(f"process {jax.process_index()} of {jax.process_count()}: {len(mine)} of {len(clips)} clip(s), "
        f"{len(long_tasks)} long audio(s) on {mesh.size} {mesh.devices.flat[0].platform} device(s)", flush=True)
  if mine:
    frames = pipeline.sample_batched(models, [clips[i] for i in mine], batch_size=o.batch_size, seeds=o.seed,
                                     progress=True, mesh=mesh, **options)
    for i, video in zip(mine, frames):
      path, audio = outs[i]
      write(path, video, audio, models.spec.fps, o.gif)
  for task in long_tasks:
    video, _ = long_audio.animate(models, task["image"], task["audio"], task["prompt"],
                                  mode=o.long_audio, seed=o.seed, batch_size=o.batch_size, **options)
    write(task["out"], video, task["audio"], models.spec.fps, o.gif)
