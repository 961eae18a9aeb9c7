"""A training run's folder (the workdir), self-contained for sampling and export: its format.

    WORKDIR/run.json            what the frozen parts are: the converted checkpoint folder the run
                                started from, or `base/` (from-scratch runs store their initial models);
                                and the run spec (`asva_jax.run_spec`): what sampling and export need
    WORKDIR/config.json         the run's config
    WORKDIR/base/               from scratch: unet/, audio_encoder/, [vae/] as in a converted checkpoint
    WORKDIR/text_encodings/     every text encoding the run used ("" = the null text)
    WORKDIR/checkpoints/<step>/ Orbax: trained parameters, optimizer state, data state, config
    WORKDIR/metrics.jsonl, WORKDIR/tensorboard/

WORKDIR is a local folder or a `gs://` URL: every file goes through `asva_jax.storage`.
This module only reads and writes those files (it imports nothing of training): training
records a run with `asva_jax.training.trained.record_run`, `asva_jax.run_spec.read` reads its
spec, and `asva_jax.pipeline.load_models` (through `training.trained.load_trained`) its models.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import ml_collections
import numpy as np
from etils import epath

from asva_jax.component_folders import CheckpointError, save_module
from asva_jax.storage import as_path, is_remote, write_bytes_atomic, write_json_atomic

RUN_FILE = "run.json"
FORMAT = "asva-jax training workdir"
VERSION = 2  # 1: before the run spec (read by `legacy_spec`)


def is_workdir(path) -> bool:
  return (as_path(path) / RUN_FILE).is_file()


def read_run(path) -> dict:
  file = as_path(path) / RUN_FILE
  if not file.is_file():
    raise CheckpointError(f"{path}: not a training workdir (no {RUN_FILE}); train one with "
                          f"python -m asva_jax.train --config configs/tiny.py --workdir {path}")
  return json.loads(file.read_text())


def base_folder(path) -> epath.Path:
  """The converted checkpoint (or `base/`) that holds the run's frozen components."""
  run = read_run(path)
  base = as_path(run["checkpoint"]) if run["checkpoint"] else as_path(path) / "base"
  if not base.is_dir():
    raise CheckpointError(f"{path}/{RUN_FILE}: its base checkpoint {base} is missing (the run reads its "
                          f"frozen components from there; restore that folder)")
  return base


def write_run(workdir, config, components: dict, spec, *, primary: bool = True) -> None:
  """Records (once) where the frozen components come from and the run spec; from scratch,
  saves the frozen components to `base/`.

  `components`: name ("unet", "audio_encoder", "vae") -> (module, its config.json dict), the
  initial models a from-scratch run stores. `spec`: the run's `run_spec.RunSpec`; its class
  prompts become those already stored in the workdir. Every process calls it (Orbax saves are
  collective across hosts); JSON files are written by the primary process only. A workdir
  written before the run spec gets it now.
  """
  workdir = as_path(workdir)
  fresh = not is_workdir(workdir)
  if fresh and not config.model.checkpoint:
    for name, (module, component_config) in components.items():
      save_module(workdir / "base" / name, module, component_config)
  if not primary:
    return
  write_json_atomic(workdir / "config.json", json.loads(config.to_json()))
  run = {} if fresh else read_run(workdir)
  if "spec" in run:
    return
  ckpt = str(as_path(config.model.checkpoint)) if config.model.checkpoint else ""
  spec = spec.with_prompts(stored_prompts(workdir / "text_encodings"))
  write_json_atomic(workdir / RUN_FILE, {"format": FORMAT, "version": VERSION,
                                         "checkpoint": run.get("checkpoint", ckpt), "spec": spec.to_json()})


def shard_frame_size(source) -> tuple[int, int]:
  """(H, W) of the frames stored in a split's shards (`data_prep.build --size`)."""
  first = source[0]
  return int(first["height"]), int(first["width"])


def write_text_encodings(workdir, encodings: dict[str, np.ndarray]) -> None:
  """`WORKDIR/text_encodings/` in the checkpoint component format (`asva_jax.text_encodings`).

  On disk the folder is swapped whole; on GCS (no folder renames) each object is replaced
  atomically, the encodings before the config that lists their prompts, so a reader
  never finds a prompt without its tensor.
  """
  from safetensors.numpy import save
  prompts = sorted(encodings)
  weights = save({str(i): np.ascontiguousarray(encodings[p], np.float32) for i, p in enumerate(prompts)})
  meta = {"prompts": prompts, "source": "asva_jax.train"}
  if is_remote(workdir):
    target = as_path(workdir) / "text_encodings"
    write_bytes_atomic(target / "encodings.safetensors", weights)
    write_json_atomic(target / "config.json", meta)
  else:
    target = Path(workdir) / "text_encodings"
    tmp = Path(tempfile.mkdtemp(prefix=".text_encodings.", dir=workdir))
    (tmp / "encodings.safetensors").write_bytes(weights)
    write_json_atomic(tmp / "config.json", meta)
    old = None
    if target.exists():
      old = target.with_name(f".text_encodings.old.{os.getpid()}")
      os.replace(target, old)
    os.replace(tmp, target)
    if old is not None:
      shutil.rmtree(old, ignore_errors=True)
  run = read_run(workdir)
  if "spec" in run:  # the spec's class prompts: `RunSpec.with_prompts` on its JSON (the null text excluded)
    spec = {**run["spec"], "class_prompts": sorted(p for p in set(prompts) if p)}
    write_json_atomic(as_path(workdir) / RUN_FILE, {**run, "spec": spec})


def read_config(path) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(json.loads((as_path(path) / "config.json").read_text()))


def steps(path) -> list[int]:
  """The finalized steps (on GCS a step folder exists before its save is committed)."""
  from orbax.checkpoint import utils
  folder = as_path(path) / "checkpoints"
  return sorted(utils.checkpoint_steps(folder)) if folder.is_dir() else []


def stored_prompts(folder) -> tuple[str, ...]:
  """The prompts of a `text_encodings/` folder's config.json (no tensors read); () when absent."""
  file = as_path(folder) / "config.json"
  if not file.is_file():
    return ()
  return tuple(sorted(p for p in json.loads(file.read_text()).get("prompts", []) if p))
