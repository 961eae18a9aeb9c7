r"""Evaluate generated clips: FID, FVD, ImageBind IA/IT, RelSync and AlignSync (docs/reference.md §9).

    python -m asva_jax.eval --generated samples/ --reference data/shards --models models/ \
        --metrics fid,fvd,ia,it,relsync,alignsync --out metrics.json

Writes the summary to --out and one JSON line per generated clip beside it
(`metrics_clips.jsonl`). The --models folder layout is in docs/evaluation.md.
"""

from __future__ import annotations

from absl import app, flags

from asva_jax.commands import runner


def define_flags(fv: flags.FlagValues = flags.FLAGS) -> None:
  flags.DEFINE_string("generated", None, "Folder of generated clips, <video>_clip-NN.mp4.", flag_values=fv)
  flags.DEFINE_string("reference", None, "Shards from data_prep.build, or a folder of videos.", flag_values=fv)
  flags.DEFINE_string("models", None, "Folder with the detector files (docs/evaluation.md).", flag_values=fv)
  flags.DEFINE_string("metrics", "fid,fvd,ia,it,relsync,alignsync", "Comma-separated metrics.", flag_values=fv)
  flags.DEFINE_string("out", "metrics.json", "Summary JSON; per-clip records go beside it.", flag_values=fv)
  flags.DEFINE_integer("num_clips", 3, "Uniform clips per reference video (the protocol: 3).", flag_values=fv)
  flags.DEFINE_integer("batch_size", 8, "Clips per network call.", flag_values=fv)
  flags.DEFINE_string("split", "test", "Split of the shards.", flag_values=fv)
  flags.DEFINE_string("category", "hitting with a stick",
                      "IT text of videos without a class folder (TheGreatestHits' class).", flag_values=fv)
  flags.DEFINE_bool("partial", False, "Evaluate only the reference videos that have clips.", flag_values=fv)
  flags.DEFINE_bool("original_category_pairing", False,
                    "Pair categories with videos as eval.py does (sorted names, categories in list order).",
                    flag_values=fv)


def main(argv, fv: flags.FlagValues = flags.FLAGS):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  for name in ("generated", "reference", "models"):
    if not fv[name].value:
      raise app.UsageError(f"--{name} is required")
  from asva_jax.eval.evaluate import evaluate
  result = evaluate(fv.generated, fv.reference, fv.models, fv.out, fv.metrics,
                    num_clips=fv.num_clips, batch_size=fv.batch_size, split=fv.split,
                    category=fv.category, partial=fv.partial,
                    original_category_pairing=fv.original_category_pairing)
  for key, value in result.items():
    if isinstance(value, float):
      print(f"{key}: {value:.6g}")
  print(f"wrote {fv.out}")


def run(argv=None) -> None:
  runner.run(main, argv, define_flags=define_flags)


if __name__ == "__main__":
  run()
