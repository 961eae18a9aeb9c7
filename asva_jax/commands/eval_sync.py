"""`python -m asva_jax.eval.sync VIDEO...`: onset alignment of videos with sound, per video and mean.

Flags -> `asva_jax.eval.sync.files.measure` per video and `summarise`; prints one line per
video and the mean, and with `--json` writes them.
"""

from __future__ import annotations

from absl import flags

from asva_jax.commands import runner
from asva_jax.eval.sync.files import VideoReadError, measure, summarise


def define_flags(fv: flags.FlagValues = flags.FLAGS) -> None:
  flags.DEFINE_float("max_lag", 1.0, "Largest lag searched, in seconds, either way.", flag_values=fv)
  flags.DEFINE_string("json", None, "Also write the per-video results and the mean to this JSON file.",
                      flag_values=fv)


def main(argv, fv: flags.FlagValues = flags.FLAGS):
  paths = argv[1:]
  if not paths:
    raise VideoReadError("no VIDEO given: python -m asva_jax.eval.sync VIDEO... [--max_lag 1.0]")
  if fv.max_lag <= 0:
    raise VideoReadError(f"--max_lag must be positive, got {fv.max_lag}")
  results = {}
  for path in paths:
    a = measure(path, fv.max_lag)
    results[path] = a
    print(f"{path}: corr at lag 0 {a.lag0:+.3f}, best lag {a.best_lag:+d} frames "
          f"({a.best_lag_seconds:+.2f} s) corr {a.best:+.3f}")
  summary = summarise(results)
  m = {k: float("nan") if v is None else v for k, v in summary["mean"].items()}
  print(f"mean over {len(results)} video(s): corr at lag 0 {m['lag0']:+.3f}, best corr {m['best']:+.3f}, "
        f"|best lag| {m['abs_best_lag_seconds']:.2f} s")
  if fv.json:
    from asva_jax.storage import write_json_atomic
    write_json_atomic(fv.json, summary)


def run(argv=None) -> None:
  runner.run(main, argv, define_flags=define_flags)


if __name__ == "__main__":
  run()
