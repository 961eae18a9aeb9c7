r"""Animate an image with a sound: AVSyncD sampling from the command line.

  python -m asva_jax.sample --ckpt CKPT --image x.png --audio y.wav --category "lions roaring" \
      --audio-guidance 4.0 --text-guidance 1.0 --out o.mp4
  python -m asva_jax.sample --ckpt CKPT --video v.mp4 --category "dog barking" --num-clips 3 --out o.mp4
  python -m asva_jax.sample --ckpt CKPT --jobs jobs.csv          # columns image,audio,category,out[,start]

CKPT is a converted checkpoint folder or a training workdir (its latest step, or --step).
Audio: with --start (or --num-clips) the original's 2-s clips (one centred clip by default
with --num-clips 1); otherwise the whole audio, window after window (--long-audio), in one mp4.
Writes H.264 at 6 fps with the audio muxed in (AAC); --gif also writes a GIF.
"""

from __future__ import annotations

import csv
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging

from asva_jax.commands import runner
from asva_jax.errors import AsvaError

FLAGS = flags.FLAGS
flags.DEFINE_string("ckpt", None, "Converted checkpoint folder or training workdir.", required=True)
flags.DEFINE_integer("step", None, "Training step to load from a workdir (default: the latest).")
flags.DEFINE_string("image", None, "First frame: any image file.")
flags.DEFINE_string("audio", None, "Audio file (anything FFmpeg decodes).")
flags.DEFINE_string("video", None, "Video whose frame at the clip start is the image and whose audio is used.")
flags.DEFINE_string("category", None, "Category prompt, e.g. 'lions roaring'.")
flags.DEFINE_float("audio-guidance", 4.0, "Audio classifier-free guidance scale (> 1 enables it).")
flags.DEFINE_float("text-guidance", 1.0, "Text classifier-free guidance scale (> 1 enables it).")
flags.DEFINE_string("out", None, "Output .mp4 (several clips: OUT_clip-00.mp4, ...).")
flags.DEFINE_float("start", None, "Start (s) of one 2-s clip.")
flags.DEFINE_integer("num-clips", None, "The original's uniform 2-s clips: centred for 1, linspace(0, d-2, k).")
flags.DEFINE_integer("steps", 50, "Sampler steps (PNDM: 50 steps = 51 UNet calls).")
flags.DEFINE_enum("scheduler", "pndm", ["pndm", "plms", "pndm-eps", "plms-eps", "ddim", "ddpm", "dpm++2m"],
                  "Sampler (docs/sampling.md).")
flags.DEFINE_float("eta", 0.0, "DDIM eta.")
flags.DEFINE_integer("seed", 0, "Seed of the initial noise and of the image's posterior sample.")
flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Compute dtype of the UNet and the VAE.")
flags.DEFINE_bool("gif", False, "Also write a GIF next to each mp4.")
flags.DEFINE_string("jobs", None, "CSV with columns image,audio,category,out[,start]; rows run in batches.")
flags.DEFINE_integer("batch-size", 4, "Clips per batched sampler call.")
flags.DEFINE_list("size", None, "Output H,W (default: the frame size in the run spec of --ckpt).")
flags.DEFINE_enum("long-audio", "anchored", ["anchored", "continuous"],
                  "How windows of a long audio chain: every window from the image, or each from the last frame.")


class JobError(AsvaError, ValueError):
  """A malformed --jobs file or conflicting flags."""


def frame_size(models) -> tuple[int, int]:
  if FLAGS.size:
    try:
      h, w = (int(v) for v in FLAGS.size)
    except ValueError as e:
      raise JobError(f"--size {','.join(FLAGS.size)}: expected H,W") from e
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


def single_job() -> dict:
  if FLAGS.jobs:
    return {}
  if not FLAGS.out or not FLAGS.category:
    raise JobError("--out and --category are required (or give --jobs FILE.csv)")
  if bool(FLAGS.video) == bool(FLAGS.image or FLAGS.audio):
    raise JobError("give either --video, or --image and --audio")
  if not FLAGS.video and not (FLAGS.image and FLAGS.audio):
    raise JobError("--image and --audio go together")
  return {"image": FLAGS.image, "audio": FLAGS.audio, "video": FLAGS.video, "category": FLAGS.category,
          "out": FLAGS.out, "start": FLAGS.start, "num_clips": FLAGS["num-clips"].value}


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


def write(path: Path, frames: np.ndarray, audio: np.ndarray, fps: int) -> None:
  from asva_jax.pipeline.video_io import write_gif, write_video
  write_video(path, frames, audio, fps=fps)
  if FLAGS.gif:
    write_gif(path.with_suffix(".gif"), frames, fps=fps)
  print(f"wrote {path} ({len(frames)} frames, {len(audio) / 16000:.2f} s audio)")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  from asva_jax.pipeline import long_audio, models as models_lib, pipeline
  jobs = read_jobs(FLAGS.jobs) if FLAGS.jobs else [single_job()]
  options = dict(audio_guidance=FLAGS["audio-guidance"].value, text_guidance=FLAGS["text-guidance"].value,
                 num_inference_steps=FLAGS.steps, scheduler=FLAGS.scheduler, eta=FLAGS.eta)
  from asva_jax.schedulers import make_plan
  make_plan(FLAGS.scheduler, FLAGS.steps, eta=FLAGS.eta)  # bad step counts fail before loading
  jobs = [read_job(job) for job in jobs]
  models = models_lib.load_models(FLAGS.ckpt, FLAGS.step, dtype=jnp.dtype(FLAGS.dtype))
  size = frame_size(models)
  clips, outs, long_tasks = [], [], []
  for job in jobs:
    c, o, task = plan_job(job, size)
    clips += c
    outs += o
    if task:
      long_tasks.append(task)
  for prompt in {c.prompt for c in clips} | {t["prompt"] for t in long_tasks}:
    models_lib.text_encoding(models, prompt)  # unknown categories fail before sampling
  if clips:
    frames = pipeline.sample_batched(models, clips, batch_size=FLAGS["batch-size"].value, seeds=FLAGS.seed,
                                     progress=True, **options)
    for (path, audio), video in zip(outs, frames):
      write(path, video, audio, models.spec.fps)
  for task in long_tasks:
    video, _ = long_audio.animate(models, task["image"], task["audio"], task["prompt"],
                                  mode=FLAGS["long-audio"].value, seed=FLAGS.seed,
                                  batch_size=FLAGS["batch-size"].value, **options)
    write(task["out"], video, task["audio"], models.spec.fps)


if __name__ == "__main__":
  runner.run(main)
