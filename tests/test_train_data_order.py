"""`GlobalOrder`: one global stream of batches, whatever the number of hosts or the resume step.

The properties checked: per epoch, every record at most once and `len // G` full batches
(the remainder dropped), each epoch its own order; host h of P reads rows
[h·G/P, (h+1)·G/P) of each global batch; the same (row, record) at every global step for
1, 2 and 4 hosts and from any start step (a resume).
"""

from __future__ import annotations

import pytest

from asva_jax.data.stream import GlobalOrder

RECORDS, BATCH, SEED, EPOCHS = 37, 8, 5, 3
PER_EPOCH = RECORDS // BATCH  # 4 batches; 5 records a epoch are dropped


def stream(process_count: int, steps: int, start_step: int = 0) -> list[list[tuple[int, int]]]:
  """Per global step, the (row, record) pairs of all hosts, host 0 first."""
  hosts = [GlobalOrder(list(range(RECORDS)), seed=SEED, global_batch=BATCH, process_index=h,
                       process_count=process_count, start_step=start_step) for h in range(process_count)]
  local = BATCH // process_count
  out = []
  for i in range(steps):
    rows = []
    for order in hosts:
      for r in range(local):
        step, row, record = order.locate(i, r)
        assert step == start_step + i
        rows.append((row, record))
    out.append(rows)
  return out


@pytest.mark.parametrize("process_count", [1, 2, 4])
def test_every_record_once_per_epoch_and_host_rows_cover_the_batch(process_count):
  batches = stream(process_count, EPOCHS * PER_EPOCH)
  for batch in batches:
    assert [row for row, _ in batch] == list(range(BATCH))  # disjoint host rows, covering, in order
  for epoch in range(EPOCHS):
    records = [rec for batch in batches[epoch * PER_EPOCH:(epoch + 1) * PER_EPOCH] for _, rec in batch]
    assert len(set(records)) == len(records) == PER_EPOCH * BATCH
    assert set(records) <= set(range(RECORDS))
  first, second = ([rec for b in batches[e * PER_EPOCH:(e + 1) * PER_EPOCH] for _, rec in b] for e in (0, 1))
  assert first != second  # each epoch its own shuffle


def test_the_stream_is_the_same_for_1_2_and_4_hosts_and_from_any_start_step():
  one = stream(1, EPOCHS * PER_EPOCH)
  assert stream(2, EPOCHS * PER_EPOCH) == one
  assert stream(4, EPOCHS * PER_EPOCH) == one
  for start in (1, PER_EPOCH, PER_EPOCH + 3):  # resumed mid-epoch, at an epoch boundary, later
    assert stream(2, 3, start_step=start) == one[start:start + 3]

