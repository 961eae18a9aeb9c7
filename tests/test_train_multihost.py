"""Preemption and resume across host counts: 2 processes -> 1 -> 2, with the same losses as one
uninterrupted process (tests/training_fixtures.py's 8-step baseline).

One run of three launches (each launch costs a compile; the scenarios share them):
  A. 2 processes (gloo), checkpoints every step; SIGTERM to process 1 only: both stop at the
     same step, save it, exit 0.
  B. 1 process resumes A's step with asynchronous checkpoints; the commit of its second new
     step is held (tests/hold_async_commit.py) and the process SIGKILLed while that save is
     in flight.
  C. 2 processes resume B's newest complete step and finish the run.
Equal losses at every step show that no batch was replayed or skipped (the data stream
restarts at the restored step on any host count). Tolerances as in test_train_sharding.py:
other device counts add partial sums in another order.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import numpy as np

from tests.training_fixtures import reference, shards  # noqa: F401 - fixtures
from tests.training_fixtures import NUM_STEPS, ROOT, config_flags, metrics, subprocess_env, train_cli
from tests.test_train_sharding import assert_params_close, free_port

RTOL = 1e-4


def two_processes(workdir, shards, tmp_path_factory, **overrides):
  port = free_port()
  return [train_cli(workdir, shards, tmp_path_factory, f"--coordinator_address=127.0.0.1:{port}",
                    "--num_processes=2", f"--process_id={i}", "--cpu_collectives=gloo", **overrides)
          for i in range(2)]


def finish(procs, timeout=600) -> list[str]:
  outs = [p.communicate(timeout=timeout)[0] for p in procs]
  for p, out in zip(procs, outs):
    assert p.returncode == 0, out
  return outs


def steps_saved(workdir) -> list[int]:
  return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


def logged(workdir) -> dict[int, float]:
  return {r["step"]: r["loss"] for r in metrics(workdir)}  # a resumed step's newest line wins


def assert_losses(workdir, expected: dict[int, float], steps) -> None:
  ours = logged(workdir)
  np.testing.assert_allclose([ours[s] for s in steps], [expected[s] for s in steps], rtol=RTOL)


def test_preempt_and_resume_across_host_counts(reference, shards, tmp_path, tmp_path_factory):
  expected = logged(reference)
  workdir = tmp_path / "run"

  # A: 2 processes; SIGTERM reaches process 1 only.
  procs = two_processes(workdir, shards, tmp_path_factory, **{"train.checkpoint_every": 1})
  deadline = time.time() + 300
  while time.time() < deadline and procs[0].poll() is None and not (
      (workdir / "metrics.jsonl").is_file() and metrics(workdir)):
    time.sleep(0.05)
  procs[1].send_signal(signal.SIGTERM)
  outs = finish(procs)
  assert "over 2 cpu devices, 2 host(s)" in outs[0]
  stopped = max(logged(workdir))
  assert f"preempted: saved step {stopped}" in outs[0], outs[0]
  assert stopped <= NUM_STEPS - 3, "the run ended before SIGTERM came"
  assert steps_saved(workdir)[-1] == stopped
  assert not (workdir / "checkpoints" / str(stopped) / "data").exists()  # the stream restarts from the step
  assert_losses(workdir, expected, range(1, stopped + 1))

  # B: 1 process resumes; SIGKILL while the async save of step stopped + 2 is in flight.
  held = stopped + 2
  proc = subprocess.Popen(
      [sys.executable, "-m", "tests.hold_async_commit", f"--workdir={workdir}",
       *config_flags(shards, **{"train.checkpoint_every": 1, "train.async_checkpoints": True})],
      cwd=ROOT, env=subprocess_env(tmp_path_factory, ASVA_HOLD_STEP=str(held)),
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  watchdog = threading.Timer(300, proc.kill)  # a run that never reaches the held step fails, not hangs
  watchdog.start()
  lines = []
  for line in proc.stdout:
    lines.append(line)
    if f"holding the commit of step {held}" in line:
      break
  proc.kill()
  watchdog.cancel()
  proc.communicate(timeout=60)
  out = "".join(lines)
  assert f"resuming at step {stopped} of {NUM_STEPS}" in out and "1 host(s)" in out, out
  assert steps_saved(workdir)[-1] == held - 1, out
  assert list((workdir / "checkpoints").glob(f"{held}.orbax-checkpoint-tmp*")), "no save was in flight"
  assert_losses(workdir, expected, range(stopped + 1, held))

  # C: 2 processes resume the newest complete step, saved by 1 process, and finish.
  outs = finish(two_processes(workdir, shards, tmp_path_factory))
  assert f"resuming at step {held - 1} of {NUM_STEPS}" in outs[0], outs[0]
  assert_losses(workdir, expected, range(1, NUM_STEPS + 1))
  assert steps_saved(workdir)[-1] == NUM_STEPS
  assert_params_close(workdir, reference, NUM_STEPS, NUM_STEPS)
