"""The protocol's report: a markdown table (this run beside the published row) and the time per stage."""

from __future__ import annotations

import contextlib
import time

# (summary key, column, scale): IA, IT, RelSync and AlignSync in percent, as the paper's AlignSync.
COLUMNS = (("FID", "FID ↓", 1.0), ("FVD", "FVD ↓", 1.0), ("IA_mean", "IA ↑ (×100)", 100.0),
           ("IT_mean", "IT ↑ (×100)", 100.0), ("RelSync_mean", "RelSync ↑ (×100)", 100.0),
           ("AlignSync_mean", "AlignSync ↑ (×100)", 100.0))


def _cell(value) -> str:
  return "—" if value is None else f"{value:.2f}"


def markdown(summary: dict, label: str, published: dict | None, published_label: str) -> str:
  """A markdown table: this run's row, and the published row when there is one (AlignSync x100)."""
  lines = ["| | " + " | ".join(c for _, c, _ in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
  ours = [summary[k] * scale if k in summary else None for k, _, scale in COLUMNS]
  lines.append(f"| {label} | " + " | ".join(_cell(v) for v in ours) + " |")
  if published is not None:
    theirs = [published.get(k.removesuffix("_mean")) for k, _, _ in COLUMNS]
    lines.append(f"| {published_label} | " + " | ".join(_cell(v) for v in theirs) + " |")
  return "\n".join(lines) + "\n"


class StageTimes:
  """Wall time per named stage, in order: `with times("generate"): ...`."""

  def __init__(self):
    self.seconds: dict[str, float] = {}

  @contextlib.contextmanager
  def __call__(self, stage: str):
    start = time.perf_counter()
    try:
      yield
    finally:
      self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start

  def summary(self) -> str:
    total = sum(self.seconds.values())
    parts = ", ".join(f"{name} {s:.1f} s" for name, s in self.seconds.items())
    return f"time per stage: {parts} (total {total:.1f} s)"
