r"""Evaluate generated clips: FID, FVD, ImageBind IA/IT, RelSync and AlignSync (docs/reference.md §9).

    python -m asva_jax.eval --generated samples/ --reference data/shards --models models/ \
        --metrics fid,fvd,ia,it,relsync,alignsync --out metrics.json

Writes the summary to --out and one JSON line per generated clip beside it
(`metrics_clips.jsonl`). The --models folder layout is in docs/evaluation.md.
"""

from __future__ import annotations

from absl import app, flags

from asva_jax.commands import runner

_GENERATED = flags.DEFINE_string("generated", None, "Folder of generated clips, <video>_clip-NN.mp4.")
_REFERENCE = flags.DEFINE_string("reference", None, "Shards from data_prep.build, or a folder of videos.")
_MODELS = flags.DEFINE_string("models", None, "Folder with the detector files (docs/evaluation.md).")
_METRICS = flags.DEFINE_string("metrics", "fid,fvd,ia,it,relsync,alignsync", "Comma-separated metrics.")
_OUT = flags.DEFINE_string("out", "metrics.json", "Summary JSON; per-clip records go beside it.")
_NUM_CLIPS = flags.DEFINE_integer("num_clips", 3, "Uniform clips per reference video (the protocol: 3).")
_BATCH = flags.DEFINE_integer("batch_size", 8, "Clips per network call.")
_SPLIT = flags.DEFINE_string("split", "test", "Split of the shards.")
_CATEGORY = flags.DEFINE_string("category", "hitting with a stick",
                                "IT text of videos without a class folder (TheGreatestHits' class).")
_PARTIAL = flags.DEFINE_bool("partial", False, "Evaluate only the reference videos that have clips.")
_ORIGINAL_PAIRING = flags.DEFINE_bool(
    "original_category_pairing", False,
    "Pair categories with videos as eval.py does (sorted names, categories in list order).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  for flag in (_GENERATED, _REFERENCE, _MODELS):
    if not flag.value:
      raise app.UsageError(f"--{flag.name} is required")
  from asva_jax.eval.run import evaluate
  result = evaluate(_GENERATED.value, _REFERENCE.value, _MODELS.value, _OUT.value, _METRICS.value,
                    num_clips=_NUM_CLIPS.value, batch_size=_BATCH.value, split=_SPLIT.value,
                    category=_CATEGORY.value, partial=_PARTIAL.value,
                    original_category_pairing=_ORIGINAL_PAIRING.value)
  for key, value in result.items():
    if isinstance(value, float):
      print(f"{key}: {value:.6g}")
  print(f"wrote {_OUT.value}")


if __name__ == "__main__":
  runner.run(main)
