"""Opening a split of the shards written by `data_prep.build` as a random-access source."""

from __future__ import annotations

import os

from etils import epath

from asva_jax.data.errors import DataError
from asva_jax.data.features import VERSION


def dataset_dir(data_dir: str | os.PathLike, name: str | None = None) -> epath.Path:
  """The `<name>/<version>` folder under `data_dir` (or `data_dir` itself if it is one); local or gs://."""
  data_dir = epath.Path(data_dir)
  if (data_dir / "dataset_info.json").is_file():
    return data_dir
  if name is None:
    names = sorted(p.parent.parent.name for p in data_dir.glob(f"*/{VERSION}/dataset_info.json"))
    if not names:
      raise DataError(f"{data_dir}: no dataset built by data_prep.build in this folder (no "
                      f"<name>/{VERSION}/dataset_info.json); build one with python -m data_prep.build "
                      f"... --out {data_dir}")
    if len(names) > 1:
      raise DataError(f"{data_dir}: {len(names)} datasets built by data_prep.build ({', '.join(names)}); "
                      f"name one (--config.data.name in training)")
    name = names[0]
  path = data_dir / name / VERSION
  if not (path / "dataset_info.json").is_file():
    raise DataError(f"{path}: no dataset_info.json (build it with python -m data_prep.build)")
  return path


def open_split(data_dir: str | os.PathLike, split: str, name: str | None = None):
  """`tfds` ArrayRecord data source of one split: len() and [i] -> dict of numpy values.

  Picklable, so grain can hand it to worker processes. Needs no TensorFlow.
  """
  import tensorflow_datasets as tfds
  path = dataset_dir(data_dir, name)
  builder = tfds.builder_from_directory(str(path))
  if split not in builder.info.splits:
    ready = ", ".join(builder.info.splits) or "none"
    raise DataError(f"{path}: split {split!r} is not built or not finished (ready: {ready})")
  if builder.info.splits[split].num_examples == 0:
    raise DataError(f"{path}: split {split!r} has no records (data_prep.build skipped every video; "
                    f"its summary-*-{split}.json in the output folder says why)")
  return builder.as_data_source(split=split)
