"""The evaluation loader over the shards (grain), and the read options both loaders share.

Evaluation: `num_clips` uniform clips per video, in order, once; every host reads its own
contiguous part (from `jax.process_index()` / `jax.process_count()`, or given explicitly).
Training clips come from `asva_jax.data.stream.train_stream`, the stream the trainer runs.

grain's worker processes (`worker_count > 0`) read absl's FLAGS: a program that never parses
flags (a notebook, a script) calls `absl.flags.FLAGS.mark_as_parsed()` first; the commands
(`asva_jax.commands.runner`) and the tests (tests/conftest.py) do.
"""

from __future__ import annotations

import os

import grain.python as grain
import numpy as np

from asva_jax.data.source import open_split
from asva_jax.data.transforms import FixedClip, UniformClips


def shard_options(process_index: int | None, process_count: int | None,
                  drop_remainder: bool) -> grain.ShardOptions:
  if process_index is None or process_count is None:
    import jax
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index {process_index} not in [0, {process_count})")
  return grain.ShardOptions(shard_index=process_index, shard_count=process_count,
                            drop_remainder=drop_remainder)


def read_options(clips_per_record: int, batch_size: int, read_threads: int) -> grain.ReadOptions:
  """A small read-ahead, about two batches and one record per read thread: a video holds every frame
  (megabytes), and grain's default of 500 records per worker would hold gigabytes. A record of the
  eval loader is one clip, one of the training stream a whole host batch."""
  prefetch = max(8 // clips_per_record, 2 * batch_size // clips_per_record, read_threads)
  return grain.ReadOptions(num_threads=read_threads, prefetch_buffer_size=prefetch)


def eval_loader(data_dir: str | os.PathLike, batch_size: int, *, split: str = "test",
                name: str | None = None, num_clips: int = 3, worker_count: int = 0,
                read_threads: int = 4, process_index: int | None = None, process_count: int | None = None,
                source=None) -> grain.DataLoader:
  """`num_clips` uniform clips per video (docs/reference.md §7.6), in order, once; the last batch may be short.

  Hosts get disjoint parts that together cover every clip (their lengths may differ by one).
  """
  source = open_split(data_dir, split, name) if source is None else source
  # Contiguous, complete parts (grain's sampler sharding drops items when hosts get unequal parts).
  options = shard_options(process_index, process_count, False)
  total = len(source) * num_clips
  part = np.array_split(np.arange(total), options.shard_count)[options.shard_index]
  clips_source = UniformClips(source, num_clips, part)
  sampler = grain.SequentialSampler(num_records=len(clips_source), shard_options=grain.NoSharding())
  return grain.DataLoader(
      data_source=clips_source, sampler=sampler,
      operations=[FixedClip(), grain.Batch(batch_size, drop_remainder=False)],
      worker_count=worker_count, read_options=read_options(1, batch_size, read_threads))
