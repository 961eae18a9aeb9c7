"""One tiny synthetic dataset and its shards, made once per pytest session and shared by
test_synthetic.py, test_data_build.py and test_loader.py (each wraps these in a fixture).

Session-wide reuse goes through pytest's per-session base temp folder: whichever test
module asks first generates, the others find the finished folders there.
"""

from __future__ import annotations

from pathlib import Path

from asva_jax.prep import build as build_lib
from asva_jax.prep import synthetic

NUM_CLASSES = 3
VIDEOS_PER_CLASS = 3      # 2 train + 1 test per class
SEED = 7
SOURCE_SIZE = (48, 64)    # synthetic frames (height, width)
BUILD_SIZE = (48, 64)     # same aspect: a no-op crop, so stored frames are comparable to the rendered ones


def synthetic_root(tmp_path_factory) -> Path:
  root = tmp_path_factory.getbasetemp() / "synthetic_avsync"
  if not (root / "events.json").is_file():
    synthetic.write_dataset(root, NUM_CLASSES, VIDEOS_PER_CLASS, SEED, height=SOURCE_SIZE[0],
                            width=SOURCE_SIZE[1], progress=False)
  return root


def build_config(root: Path, out: Path, split: str, **overrides) -> build_lib.BuildConfig:
  options = dict(dataset="avsync15", root=str(root), split=split, out=str(out), size=BUILD_SIZE,
                 name="avsync15", image_format="png", videos_per_shard=2)
  options.update(overrides)
  return build_lib.BuildConfig(**options)


def built_shards(tmp_path_factory) -> Path:
  """data_dir with the train and test splits of the synthetic dataset (PNG frames, lossless)."""
  root = synthetic_root(tmp_path_factory)
  out = tmp_path_factory.getbasetemp() / "synthetic_shards"
  if not build_lib.summary_path(build_config(root, out, "test")).is_file():
    for split in ("train", "test"):
      build_lib.build(build_config(root, out, split), num_workers=0, progress=False)
  return out
