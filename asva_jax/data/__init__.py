"""Training and evaluation data: shards from `data_prep.build`, read with grain."""

from asva_jax.data.clips import audio_window, random_start, select_frames, uniform_starts
from asva_jax.data.loader import eval_loader, train_loader
from asva_jax.data.source import DataError, open_split
from asva_jax.data.transforms import make_clip, to_unit_interval

__all__ = ["DataError", "audio_window", "eval_loader", "make_clip", "open_split", "random_start",
           "select_frames", "to_unit_interval", "train_loader", "uniform_starts"]
