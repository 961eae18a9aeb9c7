"""Where a run's metrics go: `WORKDIR/metrics.jsonl`, TensorBoard, wandb (optional), a progress bar.

Only process 0 writes; the others keep quiet.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tqdm import tqdm


class MetricsLog:
  def __init__(self, workdir, log_config, *, total_steps: int, initial_step: int, primary: bool,
               run_config=None):
    self.primary = primary
    self.path = Path(workdir) / "metrics.jsonl"
    self._tb = self._wandb = None
    self.bar = tqdm(total=total_steps, initial=initial_step, desc="train", unit="step",
                    disable=not (primary and log_config.progress), dynamic_ncols=True)
    if not primary:
      return
    if initial_step == 0 and self.path.exists():
      self.path.unlink()
    elif self.path.exists():
      self._truncate_after(initial_step)
    if log_config.tensorboard:
      from asva_jax.training.tensorboard import SummaryWriter
      self._tb = SummaryWriter(Path(workdir) / "tensorboard")
    if log_config.wandb:
      try:
        import wandb
      except ImportError:
        tqdm.write("warning: --config.log.wandb=True but wandb is not installed; not logging to wandb")
      else:
        self._wandb = wandb.init(project=log_config.wandb_project, dir=str(workdir), resume="allow",
                                 config=run_config.to_dict() if run_config is not None else None)

  def _truncate_after(self, step: int) -> None:
    """A resumed run rewrites the steps after its checkpoint: drop their old lines."""
    lines = [line for line in self.path.read_text().splitlines()
             if line.strip() and json.loads(line)["step"] <= step]
    tmp = self.path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(line + "\n" for line in lines))
    os.replace(tmp, self.path)

  def advance(self, steps: int = 1) -> None:
    self.bar.update(steps)

  def log(self, record: dict) -> None:
    if not self.primary:
      return
    with open(self.path, "a") as f:
      f.write(json.dumps(record) + "\n")
    shown = {k: record[k] for k in ("loss", "steps_per_s", "clips_per_s", "tflops_per_device", "mfu")
             if record.get(k) is not None}
    self.bar.set_postfix({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in shown.items()})
    scalars = {k: v for k, v in record.items() if k != "step" and isinstance(v, (int, float))}
    if self._tb is not None:
      self._tb.scalars(record["step"], scalars)
    if self._wandb is not None:
      self._wandb.log(scalars, step=record["step"])

  def close(self) -> None:
    self.bar.close()
    if self._tb is not None:
      self._tb.close()
    if self._wandb is not None:
      self._wandb.finish()
