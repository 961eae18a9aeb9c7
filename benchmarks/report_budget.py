"""A wall-clock budget split over the report's sections, so a GPU window is never overrun.

Each section gets a share of the total; what a section leaves unused passes to the next.
Inside a section, a row starts only when the previous row's cost still fits before the
section's deadline; a row that does not start is recorded as skipped, with the reason.
"""

from __future__ import annotations

import time


class Budget:
  def __init__(self, total_s: float, shares: dict[str, float]):
    self.start = time.perf_counter()
    self.total_s = total_s
    total = sum(shares.values())
    self.deadlines, acc = {}, 0.0
    for name, share in shares.items():
      acc += share / total
      self.deadlines[name] = self.start + acc * total_s

  def section(self, name: str) -> "Section":
    return Section(self.deadlines[name])

  def elapsed(self) -> float:
    return time.perf_counter() - self.start


class Section:
  def __init__(self, deadline: float):
    self.deadline = deadline
    self.last_cost = 0.0

  def allows(self) -> bool:
    """Whether one more row, as costly as the last one, ends before the deadline."""
    return time.perf_counter() + self.last_cost <= self.deadline

  def run(self, fn, *args, **kwargs):
    """fn(...) with its cost remembered for `allows`."""
    t = time.perf_counter()
    try:
      return fn(*args, **kwargs)
    finally:
      self.last_cost = time.perf_counter() - t


def runtime_failure(e: Exception) -> str:
  """One line for a row that XLA could not run (out of memory, a kernel refused at run time): the
  report records it under `skipped` and goes on, so one row cannot cost the whole device window."""
  text = str(e).strip()
  return f"failed: {type(e).__name__}: {text.splitlines()[0][:300] if text else ''}"


SKIPPED_BY_BUDGET = "not started: the section's share of --budget_s was spent"
