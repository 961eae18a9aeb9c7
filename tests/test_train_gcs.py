"""Runs and data in a `gs://` bucket (a real GCS API on 127.0.0.1, tests/gcs_emulator.py).

The run reads its shards from the bucket, is SIGKILLed after a checkpoint, resumes, and gets
the uninterrupted local run's losses and parameters; then it is sampled and exported from the
bucket. The synthetic data of the tiny config and `data_prep.build --out gs://` are built
locally and uploaded (checked separately: the synthetic videos are not bit-reproducible, so
the losses are compared on the reference's own shards)."""

from __future__ import annotations

import json
import signal
import time

import numpy as np
from etils import epath

from asva_jax.commands import runner
from tests.gcs_emulator import gcs_emulator
from tests.training_fixtures import (NUM_STEPS, losses, metrics, subprocess_env, tiny_config, train_cli,
                                     use_cache)
from tests.test_train_loop import reference, shards  # noqa: F401 (the fixtures: the local reference run)

BUCKET = "asva-runs"
WORKDIR = f"gs://{BUCKET}/run"
DATA = f"gs://{BUCKET}/data"


def run_cli(module: str, argv: list[str], capsys) -> tuple[int, str]:
  """`python -m MODULE ARGV` in this process: (exit status, stderr)."""
  import importlib
  command = importlib.import_module({"asva_jax.sample": "asva_jax.commands.sample"}.get(module, module))
  try:
    runner.run(command.main, [module, *argv], define_flags=command.define_flags)
    code = 0
  except SystemExit as e:
    code = e.code or 0
  return code, capsys.readouterr().err


def test_a_killed_gcs_run_resumes_samples_and_exports(reference, shards, tmp_path, tmp_path_factory,
                                                       capsys):
  from asva_jax.storage import upload_tree
  from asva_jax.training.trainer import train
  from asva_jax.run_folder import steps
  with gcs_emulator(BUCKET) as env:
    upload_tree(shards, DATA)
    # A long run (the learning rate is constant, so its steps equal the reference's), killed
    # as soon as a checkpoint is committed.
    proc = train_cli(WORKDIR, DATA, tmp_path_factory, env=subprocess_env(tmp_path_factory, **env),
                     **{"train.num_steps": 1000})
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not steps(WORKDIR):
      time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate(timeout=60)
    killed_at = steps(WORKDIR)
    assert killed_at and killed_at[-1] < NUM_STEPS, out
    log = epath.Path(WORKDIR, "metrics.jsonl")
    before = log.read_text()

    use_cache(tmp_path_factory)
    resumed = train(tiny_config(DATA), WORKDIR)
    assert resumed[0]["step"] == killed_at[-1] + 1
    assert log.read_text().startswith(before)  # the killed run's lines are all still there
    expected = losses(metrics(reference))
    np.testing.assert_array_equal(losses(metrics(WORKDIR)), expected)
    assert list(epath.Path(WORKDIR, "tensorboard").iterdir())

    from tests.sampling_checkpoint import write_media
    media = write_media(tmp_path / "media", 2.0)
    prompts = json.loads(epath.Path(WORKDIR, "text_encodings", "config.json").read_text())["prompts"]
    category = next(p for p in prompts if p)
    code, err = run_cli("asva_jax.sample", [
        f"--ckpt={WORKDIR}", f"--image={media['image']}", f"--audio={media['audio']}",
        f"--category={category}", "--steps=2", "--batch-size=1", f"--out={tmp_path / 'a.mp4'}"], capsys)
    assert code == 0, err
    assert (tmp_path / "a.mp4").stat().st_size > 0

    code, err = run_cli("convert.to_pytorch", [f"--ckpt={WORKDIR}", f"--out={tmp_path / 'gcs'}"], capsys)
    assert code == 0, err
  # The trained parameters, through the exports: bit-identical to the uninterrupted local run's.
  code, err = run_cli("convert.to_pytorch", [f"--ckpt={reference}", f"--out={tmp_path / 'local'}"], capsys)
  assert code == 0, err
  from safetensors.numpy import load_file
  for name in ("unet", "audio_encoder"):
    file = next((tmp_path / "gcs" / name).glob("*.safetensors")).name
    ours, theirs = load_file(tmp_path / "gcs" / name / file), load_file(tmp_path / "local" / name / file)
    assert ours.keys() == theirs.keys()
    for key in ours:
      np.testing.assert_array_equal(ours[key], theirs[key], err_msg=f"{name}/{key}")


def test_synthetic_data_and_data_prep_build_upload_to_gcs(shards, tmp_path_factory, capsys):
  """ArrayRecordWriter cannot write to gs://: both build locally and upload; the shards are then
  read from the bucket directly."""
  from asva_jax.data import open_split
  from asva_jax.training.trainer import prepare_synthetic
  local = open_split(shards, "train")
  config = tiny_config("")
  config.data.synthetic.size = (16, 16)
  with gcs_emulator(BUCKET):
    built = prepare_synthetic(config, epath.Path(WORKDIR))
    assert str(built) == f"{WORKDIR}/data/shards"
    shard = next(epath.Path(built, "synthetic", "1.0.0").glob("*.array_record-*-of-*[0-9]"))
    first = shard.read_bytes()
    prepare_synthetic(config, epath.Path(WORKDIR))  # a rerun finds the shards built: nothing rebuilt
    assert shard.read_bytes() == first
    remote = open_split(built, "train")
    assert len(remote) == len(local) and remote[0].keys() == local[0].keys()

    raw = shards.parent / "synthetic"  # the videos the reference shards came from
    code, err = run_cli("data_prep.build", [
        "--dataset=avsync15", f"--root={raw}", "--split=train", f"--out=gs://{BUCKET}/built", "--name=synthetic",
        "--size=16,16", "--num_workers=0"], capsys)
    assert code == 0, err
    rebuilt = open_split(f"gs://{BUCKET}/built", "train")
    assert len(rebuilt) == len(local)
    np.testing.assert_array_equal(np.sort([r["label"] for r in rebuilt]),
                                  np.sort([r["label"] for r in local]))
