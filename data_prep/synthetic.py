"""Command line of the synthetic dataset generator (the library core: `asva_jax.prep.synthetic`,
whose docstring describes the videos and the files written).

    python -m data_prep.synthetic --out DIR --num-classes K --videos-per-class N --seed S
"""

from __future__ import annotations

from pathlib import Path

from absl import app, flags

from asva_jax.commands import runner
from asva_jax.prep.synthetic import write_dataset


def define_flags(fv: flags.FlagValues = flags.FLAGS) -> None:
  """Command-line flags (defined only when run as a program, so importing never clashes)."""
  flags.DEFINE_string("out", None, "Output dataset folder.", flag_values=fv)
  flags.DEFINE_integer("num_classes", 3, "Number of classes.", flag_values=fv)
  flags.DEFINE_integer("videos_per_class", 4, "Videos per class (about a quarter go to test).", flag_values=fv)
  flags.DEFINE_integer("seed", 0, "Random seed; the same seed gives the same dataset.", flag_values=fv)
  flags.DEFINE_integer("height", 96, "Frame height.", flag_values=fv)
  flags.DEFINE_integer("width", 128, "Frame width.", flag_values=fv)
  flags.DEFINE_integer("fps", 25, "Video frame rate.", flag_values=fv)
  flags.DEFINE_integer("sample_rate", 48000, "Audio sample rate.", flag_values=fv)
  for name in ("num_classes", "videos_per_class", "sample_rate"):
    flags.DEFINE_alias(name.replace("_", "-"), name, flag_values=fv)


def main(argv, fv: flags.FlagValues = flags.FLAGS) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if not fv.out:
    raise app.UsageError("--out is required")
  out = Path(fv.out)
  if out.exists() and not out.is_dir():
    raise app.UsageError(f"--out {out}: exists and is not a folder; choose a folder path")
  for flag, low in (("num_classes", 1), ("videos_per_class", 1), ("height", 16), ("width", 16),
                    ("fps", 6), ("sample_rate", 8000)):
    if fv[flag].value < low:
      raise app.UsageError(f"--{flag.replace('_', '-')} {fv[flag].value}: must be at least {low}")
  for flag in ("height", "width"):
    if fv[flag].value % 2:
      raise app.UsageError(f"--{flag} {fv[flag].value}: must be even (H.264 with 4:2:0 chroma)")
  truth = write_dataset(fv.out, fv.num_classes, fv.videos_per_class, fv.seed,
                        height=fv.height, width=fv.width, fps=fv.fps,
                        sample_rate=fv.sample_rate)
  print(f"wrote {len(truth['videos'])} videos ({truth['video_codec']} + aac) to {fv.out}")


def run(argv: list[str] | None = None) -> None:
  """Console-script entry point (see [project.scripts] in pyproject.toml)."""
  runner.run(main, argv, define_flags=define_flags)


if __name__ == "__main__":
  run()
