"""The training clip stream (the one the trainer runs): one global order of batches, whatever the
number of hosts.

Global batch j of the run is fixed by (seed, j) alone: epoch e's shuffled order of
the records (`drop_last` per epoch, docs/reference.md §6.5), and each clip's random start and
flip from (seed, j, row). Host h of P reads only rows [h·G/P, (h+1)·G/P) of each
global batch, so one process and N processes train on the same batches, and a
run can resume on a different number of hosts: it restarts the stream at its step
(`start_step`). One item of the data source is one host batch of one step, so grain's worker
processes (`worker_count` > 0; item i goes to worker i mod W, read back round-robin) give the
same batches, in the same order, as loading in this process.

The iterator is checkpointable: `it.get_state()` -> bytes; a new stream's iterator after
`it.set_state(state)` yields exactly the batches that would have come next. The trainer's
checkpoints do not save it: a resumed run restarts the stream at its step.
"""

from __future__ import annotations

import numpy as np

import grain.python as grain

from asva_jax.data import clips
from asva_jax.data.loader import read_options
from asva_jax.data.transforms import make_clip
from asva_jax.errors import AsvaError

STREAM_STEPS = 2 ** 31  # the stream is longer than any run; the loop stops at train.num_steps


class GlobalOrder(grain.RandomAccessDataSource):
  """Item i -> this host's rows of global batch `start_step + i`, decoded and stacked."""

  def __init__(self, source, *, seed: int, global_batch: int, process_index: int, process_count: int,
               start_step: int = 0):
    if global_batch % process_count:
      raise AsvaError(f"--config.train.batch_size={global_batch} does not divide over {process_count} hosts")
    if len(source) < global_batch:
      raise AsvaError(f"the training split has {len(source)} videos, fewer than one global batch "
                      f"(--config.train.batch_size={global_batch})")
    self.source, self.seed, self.global_batch = source, seed, global_batch
    self.local = global_batch // process_count
    self.offset = process_index * self.local
    self.start_step = start_step
    self.per_epoch = len(source) // global_batch
    self._cached = (-1, None)  # (epoch, order), replaced as one object: grain reads from threads

  def __len__(self) -> int:
    # Fixed, so that a saved iterator state fits a resumed run with another num_steps.
    return STREAM_STEPS

  def order(self, epoch: int) -> np.ndarray:
    cached_epoch, order = self._cached
    if cached_epoch != epoch:
      order = np.random.default_rng([self.seed, epoch]).permutation(len(self.source))
      self._cached = (epoch, order)
    return order

  def locate(self, item: int, local_row: int) -> tuple[int, int, int]:
    """Row `local_row` of this host's part of item `item` -> (global step, row in the global batch,
    record index)."""
    step = self.start_step + int(item)
    row = self.offset + int(local_row)
    epoch, batch = divmod(step, self.per_epoch)
    return step, row, int(self.order(epoch)[batch * self.global_batch + row])

  def __getitem__(self, item: int) -> dict:
    """This host's batch of one step: each example as grain.Batch would stack it."""
    examples = [self.example(*self.locate(item, r)) for r in range(self.local)]
    return {key: np.stack([e[key] for e in examples]) for key in examples[0]}

  def example(self, step: int, row: int, record_index: int) -> dict:
    """The example of `transforms.make_clip`: start ~ U[0, duration - 2], then a fair coin for the
    flip (docs/reference.md §6.6), both drawn from (seed, global step, row) alone."""
    record = self.source[record_index]
    rng = np.random.default_rng([self.seed, step, row, 1])
    start = clips.random_start(rng, float(record["duration"]))
    flip = bool(rng.random() < 0.5)
    return make_clip(record, start, flip)

  def __repr__(self) -> str:
    return (f"GlobalOrder({self.source!r}, seed={self.seed}, global_batch={self.global_batch}, "
            f"rows {self.offset}..{self.offset + self.local})")


def train_stream(source, *, seed: int, global_batch: int, process_index: int, process_count: int,
                 start_step: int = 0, worker_count: int = 0, read_threads: int = 4) -> grain.DataLoader:
  """This host's rows of global batches `start_step`, `start_step` + 1, ... of `source` (an open
  split), in batches of `global_batch // process_count` clips; endless (the caller stops)."""
  order = GlobalOrder(source, seed=seed, global_batch=global_batch, process_index=process_index,
                      process_count=process_count, start_step=start_step)
  sampler = grain.IndexSampler(num_records=len(order), shard_options=grain.NoSharding(), shuffle=False,
                               num_epochs=1, seed=0)
  return grain.DataLoader(data_source=order, sampler=sampler, operations=[], worker_count=int(worker_count),
                          read_options=read_options(order.local, order.local, read_threads))
