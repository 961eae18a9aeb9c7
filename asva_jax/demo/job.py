"""The demo job: the training run of `configs/demo.py`, then the synchronisation report.

`python -m asva_jax.demo [--workdir DIR]` (`make demo`) runs it. Training resumes from DIR's
checkpoints like any run; the report (sampling the held-out clips, a minute or so) is
recomputed from the final step.
"""

from __future__ import annotations

import time
from pathlib import Path


def run_demo(config, workdir) -> dict:
  """Trains (or resumes) per `config` in `workdir`, then writes the demo outputs; returns the report
  ({} when training stopped early, e.g. on SIGTERM: rerunning resumes it)."""
  import jax
  from asva_jax.demo.report import REPORT, write_demo_outputs
  from asva_jax.errors import AsvaError
  from asva_jax.storage import is_remote
  from asva_jax.training.trainer import train
  from asva_jax.run_folder import steps
  if is_remote(workdir):
    raise AsvaError(f"--workdir {workdir}: the demo writes its report (GIF, plot) on a local disk; "
                    "give it a local folder (other configs train into gs:// workdirs)")
  t0 = time.perf_counter()
  train(config, workdir)
  trained = time.perf_counter() - t0
  done = steps(workdir)
  if not done or done[-1] < int(config.train.num_steps):  # preempted: the rerun finishes the job
    return {}
  if jax.process_index() != 0:
    return {}
  report = write_demo_outputs(config, workdir)
  total = time.perf_counter() - t0
  print(f"event-timing error over {report['num_clips']} held-out clips: {report['true_audio']:.2f} frames "
        f"with their own audio, {report['shuffled_audio']:.2f} with shuffled audio "
        f"(ratio {report['ratio']:.2f}); this run: {trained:.0f} s training, {total - trained:.0f} s "
        f"sampling and scoring", flush=True)
  noise = report["sample_noise"]
  static, whole = noise["static_change"], noise["frame_change"]
  print(f"sample noise ({report['weights']} weights), mean frame-to-frame change in /255: where the real clips "
        f"are still {_show(static['own_audio'])} in the samples, {_show(static['real'])} in the real videos; "
        f"whole frames {_show(whole['own_audio'])} and {_show(whole['real'])}", flush=True)
  print(f"wrote {Path(workdir) / REPORT}, {Path(workdir) / report['gif']} and {Path(workdir) / report['plot']}",
        flush=True)
  return report


def _show(value) -> str:
  return "n/a" if value is None else f"{value:.1f}"
