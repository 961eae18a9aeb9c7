"""A rerun in an existing workdir resumes it or refuses; it never restarts it or trains another model there.

The reference is the uninterrupted 8-step baseline (tests/training_fixtures.py).
"""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest

from tests.training_fixtures import reference, shards  # noqa: F401 - fixtures
from tests.training_fixtures import NUM_STEPS, losses, metrics, tiny_config, train_cli, use_cache


def contents(folder) -> dict[str, str]:
  return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
          for p in sorted(folder.rglob("*")) if p.is_file()}


def copy(reference, tmp_path):
  workdir = tmp_path / "run"
  shutil.copytree(reference, workdir)
  return workdir


def test_rerun_with_another_model_refuses_and_touches_nothing(reference, shards, tmp_path, tmp_path_factory):
  """The failure measured in issue 15: this rerun used to restart at step 0 over the run."""
  workdir = copy(reference, tmp_path)
  before = contents(workdir)
  proc = train_cli(workdir, shards, tmp_path_factory, **{"model.unet.layers_per_block": 2})
  out, _ = proc.communicate(timeout=300)
  assert proc.returncode == 2, out
  assert "Traceback" not in out and out.count("error: ") == 1, out
  assert "--config.model.unet.layers_per_block: 1 in the workdir, 2 now" in out, out
  assert "restart_from_scratch" in out and "new --workdir" in out, out
  assert contents(workdir) == before


def test_checkpoint_with_other_trees_refuses_before_writing(reference, shards, tmp_path):
  """config.json agrees (edited here), the checkpoint's parameter tree does not: refused, not skipped."""
  from asva_jax.training.trainer import train
  from asva_jax.training.resume_check import IncompatibleRun
  workdir = copy(reference, tmp_path)
  recorded = json.loads((workdir / "config.json").read_text())
  recorded["model"]["unet"]["layers_per_block"] = 2
  (workdir / "config.json").write_text(json.dumps(recorded))
  before = contents(workdir)
  with pytest.raises(IncompatibleRun, match=rf"checkpoints/{NUM_STEPS} holds other trainable parameters.*"
                                            r"unet\.down_blocks\.0\.attentions\.1\..* is new"):
    train(tiny_config(shards, **{"model.unet.layers_per_block": 2}), workdir)
  assert contents(workdir) == before


def test_cadence_change_resumes_says_so_and_keeps_what_retention_says(reference, shards, tmp_path,
                                                                      tmp_path_factory, capsys):
  from asva_jax.training.trainer import train
  workdir = copy(reference, tmp_path)
  for step in (6, 8):  # the run as it was at step 4
    shutil.rmtree(workdir / "checkpoints" / str(step))
  use_cache(tmp_path_factory)
  resumed = train(tiny_config(shards, **{"train.checkpoint_every": 1, "train.log_every": 2, "train.keep": 2,
                                         "train.milestones": (5,)}), workdir)
  out = capsys.readouterr().out
  assert "resuming with changed settings: " in out
  for change in ("train.checkpoint_every: 2 in the workdir, 1 now", "train.log_every: 1 in the workdir, 2 now",
                 "train.keep: 10 in the workdir, 2 now", "train.milestones: [] in the workdir, [5] now"):
    assert change in out, out
  assert "resuming at step 4 of 8" in out
  assert "audio keys gathered (25 per frame)" in out, out  # model.audio_keys "auto" on CPU
  assert [r["step"] for r in resumed] == [6, 8]
  np.testing.assert_array_equal(losses(resumed), losses(metrics(reference))[[5, 7]])
  # Saved 5, 6, 7, 8; kept: the last train.keep = 2 steps and the milestone (older steps deleted).
  assert sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()) == [5, 7, 8]


def test_checkpoints_hold_no_data_item_and_old_steps_with_one_resume(reference, shards, tmp_path,
                                                                      tmp_path_factory, capsys):
  """Steps no longer save grain's iterator state; a step written before, which holds one (a `data`
  item listed in the step's metadata), resumes and continues with the reference's losses."""
  import grain.python as grain
  from asva_jax.data import open_split, train_stream
  from asva_jax.training.trainer import train
  workdir = copy(reference, tmp_path)
  assert not list((workdir / "checkpoints").glob("*/data")), "a step saved a data item"
  for step in (6, 8):
    shutil.rmtree(workdir / "checkpoints" / str(step))
  step_dir = workdir / "checkpoints" / "4"
  iterator = iter(train_stream(open_split(shards, "train"), seed=0, global_batch=2, process_index=0,
                               process_count=1))
  next(iterator)
  (step_dir / "data").mkdir()
  grain.PyGrainCheckpointHandler().save(step_dir / "data", args=grain.PyGrainCheckpointSave(iterator))
  (step_dir / "data" / "commit_success.txt").write_text("Checkpoint commit was successful")
  step_meta = json.loads((step_dir / "_CHECKPOINT_METADATA").read_text())
  step_meta["item_handlers"]["data"] = "grain._src.python.checkpoint.handler.CheckpointHandler"
  (step_dir / "_CHECKPOINT_METADATA").write_text(json.dumps(step_meta))
  assert list((step_dir / "data").glob("process_0-of-1.json"))
  use_cache(tmp_path_factory)
  resumed = train(tiny_config(shards), workdir)
  assert "resuming at step 4 of 8" in capsys.readouterr().out
  np.testing.assert_array_equal(losses(resumed), losses(metrics(reference))[4:])
  assert not (workdir / "checkpoints" / "8" / "data").exists()


def test_only_damaged_steps_are_skipped_and_all_damaged_refuses(reference, shards, tmp_path, capsys):
  from asva_jax.training.checkpoints import DamagedCheckpoints
  from asva_jax.training.trainer import train
  workdir = copy(reference, tmp_path)
  steps = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
  newest = workdir / "checkpoints" / str(steps[-1])
  for f in (newest / "params" / "d").rglob("*"):  # array data corrupt, metadata intact
    if f.is_file():
      f.write_bytes(b"\0garbage" * 4)
  for step in steps[:-1]:  # metadata missing
    (workdir / "checkpoints" / str(step) / "params" / "_METADATA").unlink()
  with pytest.raises(DamagedCheckpoints, match="no checkpoint can be read") as raised:
    train(tiny_config(shards), workdir)
  for step in steps:
    assert f"{step}: " in str(raised.value)
  out = capsys.readouterr().out
  assert out.count("is unreadable") == len(steps), out
  assert [int(p.name) for p in sorted((workdir / "checkpoints").iterdir()) if p.name.isdigit()] == steps


def test_sampling_and_export_of_a_workdir_with_a_damaged_newest_step(reference, tmp_path, tmp_path_factory):
  """Issue 16: the latest step falls back past a damaged one as training does; an asked-for damaged
  step is one error line, not an Orbax traceback."""
  import subprocess
  import sys
  from asva_jax.training.checkpoints import DamagedCheckpoints
  from asva_jax.pipeline import load_models
  from tests.training_fixtures import ROOT, subprocess_env, trained_params
  workdir = copy(reference, tmp_path)
  for f in (workdir / "checkpoints" / str(NUM_STEPS) / "params" / "d").rglob("*"):
    if f.is_file():
      f.write_bytes(b"\0garbage" * 4)
  loaded = trained_params(workdir)  # load_models(workdir): the latest readable step
  expected = trained_params(reference, NUM_STEPS - 2)
  assert loaded.keys() == expected.keys()
  for path in loaded:
    np.testing.assert_array_equal(loaded[path], expected[path], err_msg=str(path))
  assert load_models(workdir).step == NUM_STEPS - 2
  with pytest.raises(DamagedCheckpoints, match=f"{NUM_STEPS}: .*choose another step"):
    load_models(workdir, NUM_STEPS)
  result = subprocess.run([sys.executable, "-m", "convert.to_pytorch", "--ckpt", str(workdir), "--step",
                           str(NUM_STEPS), "--out", str(tmp_path / "export")], cwd=ROOT,
                          env=subprocess_env(tmp_path_factory), capture_output=True, text=True, timeout=300)
  assert result.returncode == 2, result.stderr
  assert "Traceback" not in result.stderr and result.stderr.count("error: ") == 1, result.stderr
  assert "no checkpoint can be read" in result.stderr and "--step" in result.stderr, result.stderr
  assert not (tmp_path / "export").exists()


def test_changing_the_audio_attention_form_resumes():
  """model.audio_keys changes how the step computes, not what it trains: a rerun may change it, also in a
  workdir recorded before the field existed."""
  from asva_jax.training.resume_check import config_changes
  recorded = json.loads(tiny_config("").to_json())
  changed = tiny_config("", **{"model.audio_keys": "masked"})
  assert config_changes(recorded, changed) == ([], ["--config.model.audio_keys: 'auto' in the workdir, "
                                                    "'masked' now"])
  del recorded["model"]["audio_keys"]
  assert config_changes(recorded, changed) == ([], ["model.audio_keys: not recorded, now 'masked'"])
