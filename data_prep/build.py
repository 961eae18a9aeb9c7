"""Command line of the shard builder (the library core: `asva_jax.prep.build`, whose docstring
says what a record stores and why).

    python -m data_prep.build --dataset avsync15|landscapes|thegreatesthits|folder \\
        --root DIR --split train|test --out DIR [--size H,W] [--image-format jpeg|png] \\
        [--vae-latents CKPT]

OUT may be `gs://BUCKET/...`: ArrayRecordWriter needs a disk, so the split is built in a local
temporary folder (with the bucket's sidecars and metadata, so finished shards are not rebuilt)
and uploaded.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from absl import app, flags, logging

from asva_jax.commands import runner
from asva_jax.data.errors import DataError
from asva_jax.prep import sources
from asva_jax.prep.build import BuildConfig, build, is_shard, summary_path
from asva_jax.storage import check_bucket, is_remote, staged


def define_flags(fv: flags.FlagValues = flags.FLAGS) -> None:
  """Command-line flags (defined only when run as a program, so importing never clashes)."""
  flags.DEFINE_enum("dataset", None, list(sources.DATASETS), "Source layout (docs/reference.md §8.1).",
                    flag_values=fv)
  flags.DEFINE_string("root", None, "Dataset root folder.", flag_values=fv)
  flags.DEFINE_enum("split", "train", ["train", "test"], "Which list to build.", flag_values=fv)
  flags.DEFINE_string("out", None, "Output data_dir (TFDS layout: OUT/<name>/1.0.0/).", flag_values=fv)
  flags.DEFINE_string("name", None, "TFDS dataset name (default: the --dataset value).", flag_values=fv)
  flags.DEFINE_string("size", None, "Frame size H,W (default: 256,256; 128,256 for thegreatesthits).",
                      flag_values=fv)
  flags.DEFINE_enum("image_format", "jpeg", ["jpeg", "png"], "Frame encoding.", flag_values=fv)
  flags.DEFINE_integer("jpeg_quality", 95, "JPEG quality.", flag_values=fv)
  flags.DEFINE_integer("videos_per_shard", 64, "Videos per shard.", flag_values=fv)
  flags.DEFINE_integer("num_workers", os.cpu_count() or 1, "Decoding processes (0: in this process).",
                       flag_values=fv)
  flags.DEFINE_integer("shuffle_seed", 0, "Seed of the fixed shuffle of training lists (-1: keep list order).",
                       flag_values=fv)
  flags.DEFINE_string("vae_latents", None, "Converted checkpoint: also store VAE posterior moments per frame.",
                      flag_values=fv)
  for name in ("image_format", "jpeg_quality", "videos_per_shard", "num_workers", "shuffle_seed",
               "vae_latents"):
    flags.DEFINE_alias(name.replace("_", "-"), name, flag_values=fv)


def parse_size(text: str) -> tuple[int, int]:
  try:
    h, w = (int(v) for v in text.replace("x", ",").split(","))
  except ValueError:
    raise app.UsageError(f"--size {text!r}: expected H,W (e.g. 256,256)") from None
  if h <= 0 or w <= 0:
    raise app.UsageError(f"--size {text!r}: sizes must be positive")
  return h, w


def main(argv, fv: flags.FlagValues = flags.FLAGS) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  for flag in ("dataset", "root", "out"):
    if not fv[flag].value:
      raise app.UsageError(f"--{flag} is required (--dataset, --root and --out are)")
  if not fv["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # progress is the bar; warnings still show
  if is_remote(fv.out):
    check_bucket(fv.out, "--out")
  elif Path(fv.out).exists() and not Path(fv.out).is_dir():
    raise app.UsageError(f"--out {fv.out}: exists and is not a folder; choose a folder path")
  if fv.videos_per_shard < 1:
    raise app.UsageError(f"--videos-per-shard {fv.videos_per_shard}: must be at least 1")
  if not 1 <= fv.jpeg_quality <= 100:
    raise app.UsageError(f"--jpeg-quality {fv.jpeg_quality}: must be in 1..100")
  size = parse_size(fv.size) if fv.size else sources.DEFAULT_SIZES[fv.dataset]
  config = BuildConfig(dataset=fv.dataset, root=fv.root, split=fv.split, out=fv.out,
                       size=size, name=fv.name or fv.dataset, image_format=fv.image_format,
                       jpeg_quality=fv.jpeg_quality, videos_per_shard=fv.videos_per_shard,
                       shuffle_seed=None if fv.shuffle_seed < 0 else fv.shuffle_seed,
                       vae_latents=fv.vae_latents)
  if is_remote(fv.out):  # ArrayRecordWriter needs a disk: build in a local copy, then upload
    with staged(fv.out, fetch=lambda name: not is_shard(name)) as local:
      summary = build(dataclasses.replace(config, out=str(local)), num_workers=fv.num_workers)
  else:
    summary = build(config, num_workers=fv.num_workers)  # prints each skipped video as it goes
  line = (f"{summary['name']}/{summary['split']}: {summary['num_written']} written, "
          f"{summary['num_skipped']} skipped (see {summary_path(config)})")
  if summary["num_written"] == 0:
    first = "; ".join(f"{Path(s['path']).name}: {s['reason']}" for s in summary["skipped"][:3])
    more = " ..." if summary["num_skipped"] > 3 else ""
    raise DataError(f"{line}: no listed video could be used ({first}{more}), "
                    f"so the split is empty; fix or replace the videos under "
                    f"{Path(config.root).absolute()}, then rerun with a new --out")
  print(line)


def run(argv: list[str] | None = None) -> None:
  """Console-script entry point (see [project.scripts] in pyproject.toml)."""
  runner.run(main, argv, define_flags=define_flags)


if __name__ == "__main__":
  run()
