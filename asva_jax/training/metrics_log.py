"""Where a run's metrics go: `WORKDIR/metrics.jsonl`, TensorBoard, wandb (optional), a progress bar.

Only process 0 writes; the others keep quiet.

`metrics.jsonl` only grows (local or `gs://`, see `asva_jax.storage.AppendOnlyFile`): no run
deletes or truncates it. Each writer first appends a start line, {"start_step": S}, then
one record per logged step (and notes, lines with neither "step" nor "start_step" at the top:
the trainer's {"compiled": ...}). A resumed run (or one restarted from scratch, S = 0) logs again
the steps after S, so `read_metrics` gives the log as the latest writer left it: a start
line at S hides the earlier records after S, and a step logged twice keeps its latest record.
"""

from __future__ import annotations

import json
import os
import time

from tqdm import tqdm

from asva_jax.storage import AppendOnlyFile, as_path, is_remote

METRICS_FILE = "metrics.jsonl"
START = "start_step"


def read_metrics(workdir) -> list[dict]:
  """The run's records by step, each from the latest writer of that step (see the module doc).

  Lines that are not JSON (a line cut off by a crash) are skipped.
  """
  path = as_path(workdir) / METRICS_FILE
  by_step: dict[int, dict] = {}
  if not path.exists():
    return []
  for line in path.read_text().splitlines():
    try:
      record = json.loads(line)
    except json.JSONDecodeError:
      continue
    if not isinstance(record, dict):
      continue
    if START in record:
      by_step = {s: r for s, r in by_step.items() if s <= int(record[START])}
    elif "step" in record:
      by_step[int(record["step"])] = record
  return [by_step[s] for s in sorted(by_step)]


class MetricsLog:
  def __init__(self, workdir, log_config, *, total_steps: int, initial_step: int, primary: bool,
               run_config=None):
    self.primary = primary
    self._file = self._tb = self._wandb = None
    self.bar = tqdm(total=total_steps, initial=initial_step, desc="train", unit="step",
                    disable=not (primary and log_config.progress), dynamic_ncols=True)
    if not primary:
      return
    self._file = AppendOnlyFile(as_path(workdir) / METRICS_FILE)
    self._file.write((json.dumps({START: int(initial_step), "time": time.time()}) + "\n").encode())
    if log_config.tensorboard:
      from asva_jax.training.tensorboard import SummaryWriter
      self._tb = SummaryWriter(as_path(workdir) / "tensorboard")
    if log_config.wandb:
      try:
        import wandb
      except ImportError:
        tqdm.write("warning: --config.log.wandb=True but wandb is not installed; not logging to wandb")
      else:  # wandb keeps its own files on a local disk
        self._wandb = wandb.init(project=log_config.wandb_project,
                                 dir=None if is_remote(workdir) else os.fspath(workdir), resume="allow",
                                 config=run_config.to_dict() if run_config is not None else None)

  def advance(self, steps: int = 1) -> None:
    self.bar.update(steps)

  def log(self, record: dict) -> None:
    if not self.primary:
      return
    self._file.write((json.dumps(record) + "\n").encode())
    shown = {k: record[k] for k in ("loss", "steps_per_s", "clips_per_s", "tflops_per_device", "mfu")
             if record.get(k) is not None}
    self.bar.set_postfix({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in shown.items()})
    scalars = {k: v for k, v in record.items() if k != "step" and isinstance(v, (int, float))}
    if self._tb is not None:
      self._tb.scalars(record["step"], scalars)
    if self._wandb is not None:
      self._wandb.log(scalars, step=record["step"])

  def note(self, record: dict) -> None:
    """A line about the run that is no step's record (e.g. {"compiled": {...}}: the step's attention
    kernel and remat); `read_metrics` passes over it."""
    if self.primary:
      self._file.write((json.dumps(record) + "\n").encode())

  def close(self) -> None:
    self.bar.close()
    if self._file is not None:
      self._file.close()
    if self._tb is not None:
      self._tb.close()
    if self._wandb is not None:
      self._wandb.finish()
