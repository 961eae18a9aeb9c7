"""Training on one CPU device: resume, frozen weights, falling loss, corrupt checkpoints, SIGTERM, export."""

from __future__ import annotations

import shutil
import signal
import time

import jax
import numpy as np
import pytest
from flax import nnx

from tests.training_fixtures import (NUM_STEPS, baseline, build_shards, losses, metrics, tiny_config,
                                     train_cli, trained_params, use_cache)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
  return build_shards(tmp_path_factory)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, shards):
  return baseline(tmp_path_factory)


def test_frozen_parameters_stay_bit_identical(reference):
  from flax import nnx
  from asva_jax.pipeline import load_models
  from asva_jax.models.unet_3d import trainable
  initial, trained = load_models(reference, step=0), load_models(reference)
  assert trained.step == NUM_STEPS
  flat = lambda m: {p: np.asarray(v.get_value()) for p, v in nnx.to_flat_state(nnx.state(m, nnx.Param))}
  before, after = flat(initial.unet), flat(trained.unet)
  frozen = [p for p in before if not trainable(p)]
  learned = [p for p in before if trainable(p)]
  assert frozen and learned
  for p in frozen:
    np.testing.assert_array_equal(after[p], before[p], err_msg=str(p))
  assert sum(not np.array_equal(after[p], before[p]) for p in learned) > len(learned) // 2
  for p, v in flat(trained.audio_encoder).items():
    np.testing.assert_array_equal(v, flat(initial.audio_encoder)[p])


def test_loss_falls_when_overfitting(reference):
  loss = losses(metrics(reference))
  assert np.all(np.isfinite(loss))
  assert loss[-3:].mean() < loss[:3].mean() - 0.01, loss


def test_corrupt_latest_checkpoint_falls_back(reference, shards, tmp_path, tmp_path_factory, capsys):
  from asva_jax.training.trainer import train
  workdir = tmp_path / "run"
  shutil.copytree(reference, workdir)
  latest = workdir / "checkpoints" / str(NUM_STEPS)
  for f in (latest / "params").rglob("*"):
    if f.is_file() and f.stat().st_size > 0:
      f.write_bytes(b"\0garbage" * 4)
  use_cache(tmp_path_factory)
  redone = train(tiny_config(shards), workdir)
  out = capsys.readouterr().out
  assert f"checkpoint {latest} is unreadable" in out
  assert [r["step"] for r in redone] == [NUM_STEPS - 1, NUM_STEPS]
  np.testing.assert_array_equal(losses(redone), losses(metrics(reference))[-2:])


def test_sigterm_saves_exits_0_and_the_rerun_equals_an_uninterrupted_run(shards, tmp_path,
                                                                         tmp_path_factory, reference):
  from asva_jax.training.trainer import train
  workdir = tmp_path / "run"
  proc = train_cli(workdir, shards, tmp_path_factory)
  deadline = time.time() + 300
  while time.time() < deadline and proc.poll() is None:
    if (workdir / "metrics.jsonl").is_file() and metrics(workdir):
      break
    time.sleep(0.05)
  proc.send_signal(signal.SIGTERM)
  out, _ = proc.communicate(timeout=120)
  assert proc.returncode == 0, out
  assert "preempted: saved step" in out
  logged = metrics(workdir)
  stopped = logged[-1]["step"]
  assert stopped < NUM_STEPS, "the run ended before SIGTERM came"
  saved = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
  assert saved[-1] == stopped, out
  # Rerun: resumes at the saved step; same device, program, data and keys as the
  # uninterrupted reference, so the losses and parameters are bit-identical.
  use_cache(tmp_path_factory)
  resumed = train(tiny_config(shards), workdir)
  assert [r["step"] for r in resumed] == list(range(stopped + 1, NUM_STEPS + 1))
  expected = losses(metrics(reference))
  np.testing.assert_array_equal(losses(metrics(workdir)), expected)
  np.testing.assert_array_equal(losses(resumed), expected[stopped:])
  ours, theirs = trained_params(workdir), trained_params(reference)
  assert ours.keys() == theirs.keys()
  for path in ours:
    np.testing.assert_array_equal(ours[path], theirs[path], err_msg=str(path))


def test_export_of_a_workdir_matches_the_trained_unet(reference, tmp_path):
  from safetensors.torch import load_file
  from asva_jax.pipeline import load_models
  from convert.unet import import_unet
  from convert import to_pytorch
  names = to_pytorch.export_workdir(reference, tmp_path, [], None)
  assert names == ["unet", "audio_encoder"]
  tensors = load_file(str(tmp_path / "unet" / "diffusion_pytorch_model.safetensors"))
  trained = load_models(reference)
  imported, _ = import_unet(tmp_path / "unet")
  assert any("attn_temp" in k for k in tensors)
  graphdef, trained_state = nnx.split(trained.unet)
  jitted = jax.jit(lambda state, *inputs: nnx.merge(graphdef, state)(*inputs))
  rng = np.random.default_rng(0)
  c = trained.unet.config
  inputs = (rng.standard_normal((1, 12, 4, 4, c.in_channels)).astype(np.float32), np.array([500]),
            rng.standard_normal((1, 77, c.cross_attention_dim)).astype(np.float32),
            rng.standard_normal((1, 229, c.audio_cross_attention_dim)).astype(np.float32),
            trained.audio_encoder.segment_masks())
  forward = jitted.lower(trained_state, *inputs).compile({"xla_backend_optimization_level": 0})
  expected = np.asarray(forward(trained_state, *inputs))
  np.testing.assert_array_equal(np.asarray(forward(nnx.state(imported), *inputs)), expected)
  initial = np.asarray(forward(nnx.state(load_models(reference, step=0).unet), *inputs))
  assert np.abs(initial - expected).max() > 1e-4
