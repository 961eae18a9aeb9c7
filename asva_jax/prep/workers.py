"""An ordered parallel map over processes that survives a worker process dying.

A decoder can take its whole process down (a segfault or abort inside FFmpeg on a
hostile file, the OOM killer): `ProcessPoolExecutor` then fails every task in flight
with `BrokenProcessPool` and refuses new ones. Here the pool is replaced, and each
task that was in flight is run again alone, one at a time in a separate process,
so that a crash is charged to exactly the item that causes it and every other item
still gets its result. Results keep the order of the items.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import multiprocessing
import signal
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Iterable, Iterator

from absl import logging


def describe_exit(exitcode: int | None) -> str:
  """'exit code 3', 'killed by signal 11 (SIGSEGV)', ...: how a process ended."""
  if exitcode is None:
    return "exit status unknown"
  if exitcode < 0:
    try:
      return f"killed by signal {-exitcode} ({signal.Signals(-exitcode).name})"
    except ValueError:
      return f"killed by signal {-exitcode}"
  return f"exit code {exitcode}"


def _serve(conn, fn, initializer) -> None:
  """The lone worker's loop: items in, ("ok", result) or ("error", exception) out; None ends it."""
  if initializer is not None:
    initializer()
  for item in iter(conn.recv, None):
    try:
      conn.send(("ok", fn(item)))
    except Exception as e:  # noqa: BLE001 - handed to the caller, as a pool future would
      conn.send(("error", e))
  conn.close()


class LoneWorker:
  """Runs items one at a time in one child process, started on demand and replaced after
  it dies, so that a crash while running an item is that item's alone."""

  def __init__(self, fn: Callable, ctx, initializer: Callable | None = None):
    self._fn, self._ctx, self._initializer = fn, ctx, initializer
    self._process = self._conn = None

  def run(self, item, on_crash: Callable[[Any, str], Any]):
    """fn(item), or on_crash(item, how the process ended) if the process died running it."""
    if self._process is None:
      conn, child_conn = self._ctx.Pipe()
      self._process = self._ctx.Process(target=_serve, args=(child_conn, self._fn, self._initializer),
                                        daemon=True)
      self._process.start()
      child_conn.close()  # so that the child's death reads as end-of-file here
      self._conn = conn
    try:
      self._conn.send(item)
      status, value = self._conn.recv()
    except (EOFError, OSError):
      self._process.join()
      how = describe_exit(self._process.exitcode)
      self._conn.close()
      self._process = self._conn = None
      return on_crash(item, how)
    if status == "error":
      raise value
    return value

  def close(self) -> None:
    if self._process is None:
      return
    try:
      self._conn.send(None)
    except OSError:
      pass
    self._conn.close()
    self._process.join(timeout=10)
    if self._process.is_alive():
      self._process.kill()
      self._process.join()
    self._process = self._conn = None


def ordered_map(fn: Callable, items: Iterable, num_workers: int, *,
                on_crash: Callable[[Any, str], Any],
                initializer: Callable | None = None) -> Iterator:
  """Yields fn(item) for each item, in order, computed by `num_workers` spawned processes
  (at most 2 x num_workers items in flight).

  When a worker process dies, the pool is replaced and each item whose result was lost
  is run again alone (`LoneWorker`); an item whose lone process dies too yields
  on_crash(item, how the process ended, e.g. 'killed by signal 11 (SIGSEGV)').
  `fn`, the items and the results must be picklable.
  """
  items = list(items)
  ctx = multiprocessing.get_context("spawn")
  lone = LoneWorker(fn, ctx, initializer)
  window, pending, next_item, pool = 2 * num_workers, collections.deque(), 0, None

  def discard(p):
    if p is not None:
      p.shutdown(wait=True, cancel_futures=True)

  try:
    while next_item < len(items) or pending:
      if pool is None and not pending:
        pool = cf.ProcessPoolExecutor(num_workers, mp_context=ctx, initializer=initializer)
      while pool is not None and next_item < len(items) and len(pending) < window:
        item = items[next_item]
        try:
          future = pool.submit(fn, item)
        except BrokenProcessPool:
          discard(pool)
          pool, future = None, None  # run alone below if nothing else is in flight
          if pending:
            break
        pending.append((item, future))
        next_item += 1
      item, future = pending.popleft()
      if future is None:
        yield lone.run(item, on_crash)
        continue
      try:
        result = future.result()
      except BrokenProcessPool:
        if pool is not None:
          logging.warning("a worker process died; running the %d items that were in flight "
                          "again, one at a time", len(pending) + 1)
          discard(pool)
          pool = None
        result = lone.run(item, on_crash)
      yield result
  finally:
    discard(pool)
    lone.close()
