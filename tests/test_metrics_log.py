"""metrics.jsonl only grows (on disk and on GCS), and reads back as the latest writer left it."""

from __future__ import annotations

import json

import ml_collections
import pytest

from asva_jax.training.metrics_log import MetricsLog, read_metrics
from tests.gcs_emulator import gcs_emulator

LOG = ml_collections.ConfigDict({"progress": False, "tensorboard": True, "wandb": False})


def write_run(workdir, start: int, stop: int, tag: str) -> None:
  log = MetricsLog(workdir, LOG, total_steps=stop, initial_step=start, primary=True)
  for step in range(start + 1, stop + 1):
    log.log({"step": step, "loss": float(step), "run": tag})
  log.close()


def check_resumes(workdir, read_text, list_events) -> None:
  write_run(workdir, 0, 5, "first")
  first = read_text()
  write_run(workdir, 3, 7, "resumed")  # resumed from a checkpoint at step 3
  second = read_text()
  assert second.startswith(first)  # nothing the first run wrote is lost
  records = read_metrics(workdir)
  assert [(r["step"], r["run"]) for r in records] == [
      (1, "first"), (2, "first"), (3, "first"), (4, "resumed"), (5, "resumed"), (6, "resumed"),
      (7, "resumed")]
  write_run(workdir, 0, 2, "restarted")  # no checkpoint at all: a run from step 0 hides everything
  assert read_text().startswith(second)
  assert [(r["step"], r["run"]) for r in read_metrics(workdir)] == [(1, "restarted"), (2, "restarted")]
  assert len(list_events()) == 3  # one TensorBoard file per writer, none rewritten by a later one


def test_local_log_is_append_only(tmp_path):
  events = lambda: sorted((tmp_path / "tensorboard").iterdir())
  check_resumes(tmp_path, lambda: (tmp_path / "metrics.jsonl").read_text(), events)
  lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
  assert sum(1 for line in lines if "step" in json.loads(line)) == 5 + 4 + 2


def test_a_record_cut_off_by_a_crash_does_not_swallow_the_next(tmp_path):
  write_run(tmp_path, 0, 2, "first")
  with open(tmp_path / "metrics.jsonl", "a") as f:
    f.write('{"step": 3, "lo')  # the process died mid-write
  write_run(tmp_path, 2, 4, "resumed")
  assert [(r["step"], r["run"]) for r in read_metrics(tmp_path)] == [
      (1, "first"), (2, "first"), (3, "resumed"), (4, "resumed")]


def test_gcs_log_is_append_only():
  from etils import epath
  with gcs_emulator("logs"):
    workdir = "gs://logs/run"
    check_resumes(workdir, lambda: epath.Path(workdir, "metrics.jsonl").read_text(),
                  lambda: list(epath.Path(workdir, "tensorboard").iterdir()))


def test_gcs_text_encodings_and_json_round_trip(tmp_path):
  """(The training run writes its encodings to the bucket itself: tests/test_train_gcs.py.)"""
  import numpy as np
  from safetensors.numpy import save_file
  from asva_jax.storage import write_json_atomic
  from asva_jax.storage import upload_tree
  from asva_jax.text_encodings import load_text_encodings
  from etils import epath
  encodings = {"": np.zeros((77, 4), np.float32), "dog barking": np.arange(308, dtype=np.float32).reshape(77, 4)}
  folder = tmp_path / "text_encodings"
  folder.mkdir()
  save_file({"0": encodings[""], "1": encodings["dog barking"]}, str(folder / "encodings.safetensors"))
  (folder / "config.json").write_text(json.dumps({"prompts": ["", "dog barking"]}))
  with gcs_emulator("enc"):
    upload_tree(tmp_path, "gs://enc/ckpt")
    loaded = load_text_encodings("gs://enc/ckpt")
    write_json_atomic("gs://enc/run/x/config.json", {"a": 1})
    assert json.loads(epath.Path("gs://enc/run/x/config.json").read_text()) == {"a": 1}
  assert loaded.keys() == encodings.keys()
  for prompt, value in encodings.items():
    np.testing.assert_array_equal(loaded[prompt], value)


def test_a_missing_bucket_is_refused_with_its_name():
  from asva_jax.storage import StorageError, check_bucket
  with gcs_emulator("present"):
    check_bucket("gs://present/run", "--workdir")
    with pytest.raises(StorageError, match="--workdir gs://absent/run: the bucket gs://absent does not exist"):
      check_bucket("gs://absent/run", "--workdir")


class _PendingStep:
  """Metrics of a step still running: they are ready only after `seconds` more on the clock."""

  def __init__(self, clock: list[float], seconds: float):
    self.clock, self.seconds = clock, seconds

  def block_until_ready(self):
    self.clock[0] += self.seconds
    return self


def test_the_logged_rate_waits_for_the_last_step(monkeypatch):
  """Steps are dispatched asynchronously: the window of a logged steps/s ends when the last step's
  metrics exist, not when its dispatch returned (the demo logged 15-25 steps/s for 3.8 that way)."""
  from asva_jax.training import trainer
  clock = [100.0]
  monkeypatch.setattr(trainer.time, "perf_counter", lambda: clock[0])
  metrics = {"loss": _PendingStep(clock, 4.0)}
  out, rate = trainer.window_rate(metrics, window_start=99.0, steps=10)  # dispatched 10 steps in 1 s
  assert out is metrics
  assert rate == pytest.approx(10 / 5.0)  # 1 s of dispatch + 4 s until the last step finished
