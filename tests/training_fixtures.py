"""Shared pieces of the training tests: the tiny config, shards built once, CLI runs.

Every run shares one persistent XLA compilation cache (per test session), so the
tiny train step compiles once per mesh rather than once per run.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
NUM_STEPS = 8


def load_config_file(name: str, variant: str | None = None):
  spec = importlib.util.spec_from_file_location(f"configs_{name}", ROOT / "configs" / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(variant) if variant else module.get_config()


# The recipe's split (only _temp/_audio train) on the tiny model, so the frozen tree is not empty.
OVERRIDES = {"model.trainable": "temp_audio", "model.train_audio_encoder": False,
             "xla_backend_optimization_level": 0,
             "train.num_steps": NUM_STEPS, "train.checkpoint_every": 2, "train.keep": 10,
             "train.log_every": 1, "log.progress": False}


def tiny_config(data_dir, **overrides):
  config = load_config_file("tiny", "one_level")
  config.data.dir = str(data_dir)
  for key, value in {**OVERRIDES, **overrides}.items():
    node = config
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  return config


def config_flags(data_dir, **overrides) -> list[str]:
  return ["--config", f"{ROOT / 'configs' / 'tiny.py'}:one_level", f"--config.data.dir={data_dir}"] + [
      f"--config.{k}={v}" for k, v in {**OVERRIDES, **overrides}.items()]


def cache_dir(tmp_path_factory) -> Path:
  return tmp_path_factory.getbasetemp() / "xla_cache"


def use_cache(tmp_path_factory) -> None:
  import jax
  jax.config.update("jax_compilation_cache_dir", str(cache_dir(tmp_path_factory)))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def subprocess_env(tmp_path_factory, **extra) -> dict:
  env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu",
             JAX_COMPILATION_CACHE_DIR=str(cache_dir(tmp_path_factory)),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
  env.pop("XLA_FLAGS", None)
  env.update(extra)
  return env


def build_shards(tmp_path_factory) -> Path:
  """Synthetic videos and shards, built once per session (reused when present)."""
  from asva_jax.training.trainer import prepare_synthetic
  base = tmp_path_factory.getbasetemp() / "train_data"
  config = tiny_config("")
  config.data.synthetic.size = (16, 16)  # 4 x 4 latents: a quarter of the tiny config's compute
  return prepare_synthetic(config, base)


def train_cli(workdir, data_dir, tmp_path_factory, *extra_flags, env=None, **overrides):
  return subprocess.Popen([sys.executable, "-m", "asva_jax.train", f"--workdir={workdir}",
                           *config_flags(data_dir, **overrides), *extra_flags],
                          cwd=ROOT, env=env or subprocess_env(tmp_path_factory),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def metrics(workdir) -> list[dict]:
  from asva_jax.training.metrics_log import read_metrics
  return read_metrics(workdir)


def losses(records) -> np.ndarray:
  return np.asarray([r["loss"] for r in records], np.float64)


def trained_params(workdir, step=None, raw_weights=False) -> dict:
  """Flat {path: array} of the trainable parameters stored at `step` (default latest; a run with
  EMA weights gives them unless `raw_weights`)."""
  import jax
  from flax import nnx
  from asva_jax.training.state import split_model
  from asva_jax.pipeline import load_models
  loaded = load_models(workdir, step, raw_weights=raw_weights)
  from asva_jax.training.build import Trainee
  model = Trainee(loaded.unet, loaded.autoencoder, loaded.audio_encoder)
  config = loaded.config
  config.precision.frozen = "float32"
  _, params, _ = split_model(model, config)
  return {path: np.asarray(v) for path, v in jax.tree_util.tree_flatten_with_path(
      nnx.to_pure_dict(params))[0]}


def baseline(tmp_path_factory):
  """The reference run: 1 device, 1 process, NUM_STEPS steps, checkpoints every 2 (made once)."""
  from asva_jax.training.trainer import train
  workdir = tmp_path_factory.getbasetemp() / "baseline"
  done = workdir / "checkpoints" / str(NUM_STEPS) / "commit_success.txt"
  if not done.is_file():
    use_cache(tmp_path_factory)
    train(tiny_config(build_shards(tmp_path_factory)), workdir)
  return workdir


# Module fixtures for the training tests: `from tests.training_fixtures import reference, shards`.
@pytest.fixture(scope="module")
def shards(tmp_path_factory):
  return build_shards(tmp_path_factory)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, shards):
  del shards  # built first
  return baseline(tmp_path_factory)
