"""Command line of the synthetic dataset generator (the library core: `asva_jax.prep.synthetic`,
whose docstring describes the videos and the files written).

    python -m data_prep.synthetic --out DIR --num-classes K --videos-per-class N --seed S
"""

from __future__ import annotations

from pathlib import Path

from absl import app, flags

from asva_jax import command
from asva_jax.prep.synthetic import write_dataset

FLAGS = flags.FLAGS


def define_flags() -> None:
  """Command-line flags (defined only when run as a program, so importing never clashes)."""
  flags.DEFINE_string("out", None, "Output dataset folder.")
  flags.DEFINE_integer("num_classes", 3, "Number of classes.")
  flags.DEFINE_integer("videos_per_class", 4, "Videos per class (about a quarter go to test).")
  flags.DEFINE_integer("seed", 0, "Random seed; the same seed gives the same dataset.")
  flags.DEFINE_integer("height", 96, "Frame height.")
  flags.DEFINE_integer("width", 128, "Frame width.")
  flags.DEFINE_integer("fps", 25, "Video frame rate.")
  flags.DEFINE_integer("sample_rate", 48000, "Audio sample rate.")
  for name in ("num_classes", "videos_per_class", "sample_rate"):
    flags.DEFINE_alias(name.replace("_", "-"), name)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if not FLAGS.out:
    raise app.UsageError("--out is required")
  out = Path(FLAGS.out)
  if out.exists() and not out.is_dir():
    raise app.UsageError(f"--out {out}: exists and is not a folder; choose a folder path")
  for flag, low in (("num_classes", 1), ("videos_per_class", 1), ("height", 16), ("width", 16),
                    ("fps", 6), ("sample_rate", 8000)):
    if FLAGS[flag].value < low:
      raise app.UsageError(f"--{flag.replace('_', '-')} {FLAGS[flag].value}: must be at least {low}")
  for flag in ("height", "width"):
    if FLAGS[flag].value % 2:
      raise app.UsageError(f"--{flag} {FLAGS[flag].value}: must be even (H.264 with 4:2:0 chroma)")
  truth = write_dataset(FLAGS.out, FLAGS.num_classes, FLAGS.videos_per_class, FLAGS.seed,
                        height=FLAGS.height, width=FLAGS.width, fps=FLAGS.fps,
                        sample_rate=FLAGS.sample_rate)
  print(f"wrote {len(truth['videos'])} videos ({truth['video_codec']} + aac) to {FLAGS.out}")


def run() -> None:
  """Console-script entry point (see [project.scripts] in pyproject.toml)."""
  define_flags()
  command.run(main)


if __name__ == "__main__":
  run()
