"""The same training on 8 simulated devices (data x fsdp mesh); two real processes (gloo) in
tests/test_train_multihost.py.

Tolerances: the sharded programs add partial sums in a different order than the
1-device program (per-device partial gradients, all-reduces), so values agree to
float32 rounding, not bit for bit. Losses: 1e-5 relative. Parameters after Adam
steps: Adam divides by sqrt(v), which turns a rounding difference in a gradient
near zero into a visible update difference for that element; we bound the
difference by 2% of the learning rate times the number of steps.
"""

from __future__ import annotations

import socket

import numpy as np
import pytest

from tests.training_fixtures import (baseline, build_shards, losses, metrics, subprocess_env, tiny_config,
                                     train_cli, trained_params, use_cache)

STEPS = 2
LOSS_RTOL = 1e-5


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
  return build_shards(tmp_path_factory)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, shards):
  return baseline(tmp_path_factory)


def assert_params_close(workdir, reference, step, steps_taken):
  lr = tiny_config("").train.learning_rate
  ours, theirs = trained_params(workdir, step), trained_params(reference, step)
  assert ours.keys() == theirs.keys()
  worst = max(float(np.max(np.abs(ours[p] - theirs[p]))) for p in ours)
  assert worst <= 0.02 * lr * steps_taken, worst


def test_eight_devices_equal_one_then_resume_on_one(reference, shards, tmp_path, tmp_path_factory):
  from asva_jax.training.trainer import train
  workdir = tmp_path / "run"
  env = subprocess_env(tmp_path_factory, XLA_FLAGS="--xla_force_host_platform_device_count=8")
  proc = train_cli(workdir, shards, tmp_path_factory, env=env,
                   **{"train.num_steps": STEPS, "mesh.data": 4, "mesh.fsdp": 2, "mesh.min_shard_size": 1,
                      "mesh.shard_frozen": True})
  out, _ = proc.communicate(timeout=600)
  assert proc.returncode == 0, out
  assert "mesh {'data': 4, 'fsdp': 2} over 8 cpu devices" in out
  expected = losses(metrics(reference))
  np.testing.assert_allclose(losses(metrics(workdir)), expected[:STEPS], rtol=LOSS_RTOL)
  assert_params_close(workdir, reference, STEPS, STEPS)
  # Saved on an 8-device mesh, resumed on this process's single device.
  use_cache(tmp_path_factory)
  resumed = train(tiny_config(shards, **{"train.num_steps": STEPS + 2}), workdir)
  assert [r["step"] for r in resumed] == [STEPS + 1, STEPS + 2]
  np.testing.assert_allclose(losses(resumed), expected[STEPS:STEPS + 2], rtol=1e-4)


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]

