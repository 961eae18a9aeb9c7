"""Training and evaluation data: shards from `data_prep.build`, read with grain.

The names below are imported on first use (PEP 562), so tools that need only the record
schema (`asva_jax.data.features`) do not pay for importing grain.
"""

import importlib

_WHERE = {
    "audio_window": "clips", "random_start": "clips", "select_frames": "clips", "uniform_starts": "clips",
    "eval_loader": "loader", "GlobalOrder": "stream", "train_stream": "stream",
    "DataError": "source", "open_split": "source",
    "make_clip": "transforms", "to_unit_interval": "transforms",
}

__all__ = sorted(_WHERE)


def __getattr__(name):
  if name not in _WHERE:
    raise AttributeError(f"module 'asva_jax.data' has no attribute {name!r}")
  return getattr(importlib.import_module(f"asva_jax.data.{_WHERE[name]}"), name)
