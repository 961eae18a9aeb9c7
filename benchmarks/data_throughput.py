"""Data pipeline throughput: shard building (videos/s) and loading (clips/s per CPU core).

    python -m benchmarks.data_throughput [--videos 6] [--source 360,640] [--size 256,256]

Makes synthetic videos at a typical source resolution, builds JPEG shards at the
training size, then times one loader process (record read + 12 JPEG decodes +
log-mel + flip, i.e. everything a grain worker does per clip) and the trainer's
stream (`asva_jax.data.train_stream`, grain in-process) end to end. Prints the figures and
how many cores one host needs to feed a training step.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
from absl import app, flags

from asva_jax.commands import runner


def define_flags(fv: flags.FlagValues = flags.FLAGS) -> None:
  flags.DEFINE_integer("videos", 6, "Synthetic videos to build (3-6 s each).", flag_values=fv)
  flags.DEFINE_string("source", "360,640", "Source frame size H,W.", flag_values=fv)
  flags.DEFINE_string("size", "256,256", "Stored frame size H,W.", flag_values=fv)
  flags.DEFINE_integer("num_workers", 2, "Build processes.", flag_values=fv)
  flags.DEFINE_integer("clips", 200, "Clips to time in the loader.", flag_values=fv)
  flags.DEFINE_string("work_dir", None, "Scratch folder (default: a temporary one).", flag_values=fv)


def _pair(text: str, flag: str) -> tuple[int, int]:
  try:
    h, w = (int(v) for v in text.split(","))
  except ValueError:
    raise app.UsageError(f"--{flag} {text!r}: expected H,W (e.g. 256,256)") from None
  if h < 16 or w < 16 or h % 2 or w % 2:
    raise app.UsageError(f"--{flag} {text!r}: sizes must be even and at least 16")
  return h, w


def run(work: Path, videos: int, source: tuple[int, int], size: tuple[int, int], num_workers: int,
        num_clips: int) -> dict:
  from asva_jax.data import open_split, train_stream
  from asva_jax.data.clips import random_start
  from asva_jax.data.transforms import make_clip
  from asva_jax.prep import build as build_lib
  from asva_jax.prep import synthetic

  classes = 2
  per_class = max(2, videos // classes)
  synthetic.write_dataset(work / "src", classes, per_class, seed=0, height=source[0], width=source[1])
  seconds = sum(v["duration"] for v in __import__("json").loads(
      (work / "src" / "events.json").read_text())["videos"].values())
  config = build_lib.BuildConfig(dataset="folder", root=str(work / "src" / "videos"), split="train",
                                 out=str(work / "shards"), size=size, name="bench",
                                 videos_per_shard=4)
  t0 = time.perf_counter()
  summary = build_lib.build(config, num_workers=num_workers)
  build_s = time.perf_counter() - t0
  n_videos = summary["num_written"]

  src = open_split(work / "shards", "train")
  rng = np.random.default_rng(0)
  t0 = time.perf_counter()
  for i in range(num_clips):
    record = src[i % len(src)]
  read_s = (time.perf_counter() - t0) / num_clips
  record = src[0]
  t0 = time.perf_counter()
  for i in range(num_clips):
    make_clip(record, random_start(rng, float(record["duration"])), bool(i % 2))
  clip_s = (time.perf_counter() - t0) / num_clips

  batch = min(8, len(src))  # the stream refuses a split smaller than one global batch
  it = iter(train_stream(src, seed=0, global_batch=batch, process_index=0, process_count=1,
                         read_threads=1))
  next(it)
  t0 = time.perf_counter()
  n_batches = max(1, num_clips // batch)
  for _ in range(n_batches):
    next(it)
  loader_s = (time.perf_counter() - t0) / (n_batches * batch)
  return {"videos": n_videos, "source_seconds": seconds, "build_s": build_s,
          "build_workers": num_workers, "record_mb": summary["num_bytes"] / max(1, n_videos) / 1e6,
          "read_ms": 1e3 * read_s, "clip_ms": 1e3 * clip_s, "loader_ms": 1e3 * loader_s}


def main(argv, fv: flags.FlagValues = flags.FLAGS):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  for flag in ("videos", "clips"):
    if fv[flag].value < 1:
      raise app.UsageError(f"--{flag} {fv[flag].value}: must be at least 1")
  if fv.num_workers < 0:
    raise app.UsageError(f"--num_workers {fv.num_workers}: must be 0 or more")
  if fv.work_dir and not Path(fv.work_dir).is_dir():
    raise app.UsageError(f"--work_dir {fv.work_dir}: no such folder")
  source, size = _pair(fv.source, "source"), _pair(fv.size, "size")
  with tempfile.TemporaryDirectory(dir=fv.work_dir) as tmp:
    r = run(Path(tmp), fv.videos, source, size, fv.num_workers, fv.clips)
  per_core = 1e3 / (r["read_ms"] + r["clip_ms"])
  print(f"build: {r['videos']} videos ({r['source_seconds']:.0f} s of {fv.source} video) in "
        f"{r['build_s']:.1f} s with {r['build_workers']} processes = {r['videos'] / r['build_s']:.2f} "
        f"videos/s ({r['source_seconds'] / r['build_s']:.1f} source s/s); "
        f"{r['record_mb']:.2f} MB per record")
  print(f"loader, one core: record read {r['read_ms']:.1f} ms + clip (12 JPEG decodes, log-mel, "
        f"flip) {r['clip_ms']:.1f} ms = {per_core:.0f} clips/s per core; training stream "
        f"in-process: {r['loader_ms']:.1f} ms per clip ({1e3 / r['loader_ms']:.0f} clips/s)")
  # An AVSyncD step at 256 x 256, 12 frames, global batch 64 (fwd + bwd of the 1.4-B-parameter
  # UNet on 64 x 12 latents of 32 x 32, plus the frozen VAE encoder and ImageBind) is
  # ~250-300 TFLOP; at ~40% of an 8 x A100 / TPU v4-32 slice that is ~0.5-1 s per step.
  for step_s in (0.5, 1.0):
    need = 64 / step_s
    print(f"step {step_s:.1f} s at global batch 64: {need:.0f} clips/s in all = "
          f"{need / per_core:.1f} cores in all ({need / per_core / 4:.2f} per host with 4 hosts)")


if __name__ == "__main__":
  runner.run(main, define_flags=define_flags)
