"""Evaluation of generated clips: FID, FVD, ImageBind IA/IT, RelSync and AlignSync (docs/reference.md §9).

    python -m asva_jax.eval --generated DIR --reference SHARDS --models DIR --out metrics.json

The detector loaders read the original PyTorch weight files directly.
"""


def load_avsync_classifier(modules_dir):
  from asva_jax.eval.avsync_classifier import load_avsync_classifier as _load
  return _load(modules_dir)


def load_imagebind(path, **options):
  from asva_jax.eval.imagebind import load_imagebind as _load
  return _load(path, **options)


def load_inception(path, **options):
  from asva_jax.eval.inception import load_inception as _load
  return _load(path, **options)


def load_i3d(path, **options):
  from asva_jax.eval.i3d import load_i3d as _load
  return _load(path, **options)


def frechet_distance(x1, x2, **options):
  from asva_jax.eval.frechet import frechet_distance as _load
  return _load(x1, x2, **options)
