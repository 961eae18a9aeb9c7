"""A training run's folder, self-contained for sampling and export.

    WORKDIR/run.json            what the frozen parts are: the converted checkpoint folder the run
                                started from, or `base/` (from-scratch runs store their initial models);
                                and the run spec (`asva_jax.run_spec`): what sampling and export need
    WORKDIR/config.json         the run's config
    WORKDIR/base/               from scratch: unet/, audio_encoder/, [vae/] as in a converted checkpoint
    WORKDIR/text_encodings/     every text encoding the run used ("" = the null text)
    WORKDIR/checkpoints/<step>/ Orbax: trained parameters, optimizer state, data state, config
    WORKDIR/metrics.jsonl, WORKDIR/tensorboard/

WORKDIR is a local folder or a `gs://` URL: every file goes through `asva_jax.storage`.

`load_models(WORKDIR)` gives the UNet with its trained parameters merged into the
frozen base, the autoencoder, the audio encoder, the text encodings and the run spec.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from etils import epath
from flax import nnx

from asva_jax import run_spec
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


def write_run(workdir, config, built, *, frame_size, primary: bool = True) -> None:
  """Records (once) where the frozen components come from and the run spec at the data's
  `frame_size`; from scratch, saves the frozen components to `base/`.

  Every process calls it (Orbax saves are collective across hosts); JSON files are
  written by the primary process only. A workdir written before the run spec gets it now.
  """
  workdir = as_path(workdir)
  fresh = not is_workdir(workdir)
  if fresh and not config.model.checkpoint:
    base = workdir / "base"
    model = built.model
    save_module(base / "unet", model.unet, built.configs["unet"])
    save_module(base / "audio_encoder", model.audio_encoder, built.configs["audio_encoder"])
    if "vae" in built.configs:
      save_module(base / "vae", model.autoencoder, built.configs["vae"])
  if not primary:
    return
  write_json_atomic(workdir / "config.json", json.loads(config.to_json()))
  run = {} if fresh else read_run(workdir)
  if "spec" in run:
    return
  ckpt = str(as_path(config.model.checkpoint)) if config.model.checkpoint else ""
  spec = run_spec.from_config(config, frame_size=frame_size,
                              autoencoder_factor=run_spec.autoencoder_factor(built.model.autoencoder),
                              class_prompts=run_spec.stored_prompts(workdir / "text_encodings"))
  write_json_atomic(workdir / RUN_FILE, {"format": FORMAT, "version": VERSION,
                                         "checkpoint": run.get("checkpoint", ckpt), "spec": spec.to_json()})


def shard_frame_size(source) -> tuple[int, int]:
  """(H, W) of the frames stored in a split's shards (`data_prep.build --size`)."""
  first = source[0]
  return int(first["height"]), int(first["width"])


def read_spec(path) -> run_spec.RunSpec:
  """The run spec in WORKDIR/run.json (or `legacy_spec` for a workdir written before it)."""
  run = read_run(path)
  if "spec" not in run:
    return legacy_spec(path, run)
  return run_spec.RunSpec.from_json(run["spec"], f"{as_path(path) / RUN_FILE} (spec)")


def legacy_spec(path, run: dict) -> run_spec.RunSpec:
  """A version-1 workdir's spec, derived as its training used them: the schedule from
  config.json; prediction type, autoencoder and scaling from run.json ("epsilon" when it
  names no prediction type: it did from the first v-prediction run on); the frame size from
  its shards (`config.data.dir`, else WORKDIR/data/shards, else `data.synthetic.size`); the
  prompts from WORKDIR/text_encodings. Resuming training writes the spec."""
  from asva_jax.data import open_split
  path = as_path(path)
  config = read_config(path)
  config.diffusion.prediction_type = str(run.get("prediction_type", "epsilon"))
  config.diffusion.scaling_factor = float(run["scaling_factor"])
  config.model.autoencoder = str(run["autoencoder"])
  if run["autoencoder"] == "space_to_depth":
    factor = int(run["space_to_depth_factor"])
  else:
    vae = json.loads((base_folder(path) / "vae" / "config.json").read_text())
    factor = 2 ** (len(vae["block_out_channels"]) - 1)
  shards = config.data.dir or str(path / "data" / "shards")
  try:
    size = shard_frame_size(open_split(shards, config.data.split, config.data.name or None))
  except Exception as e:  # any reason the shards cannot be read: the synthetic size, or one clear error
    if config.data.dir or not config.data.synthetic.enabled:
      raise run_spec.RunSpecError(
          f"{path / RUN_FILE}: written before the run spec, and its frame size cannot be derived: the "
          f"shards it trained on ({shards}) cannot be read ({e}); restore them, or resume training "
          f"once to record the spec") from None
    size = tuple(config.data.synthetic.size)
  return run_spec.from_config(config, frame_size=size, autoencoder_factor=factor,
                              class_prompts=run_spec.stored_prompts(path / "text_encodings"))


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
  spec = read_spec(workdir).with_prompts(prompts)
  write_json_atomic(as_path(workdir) / RUN_FILE, {**run, "spec": spec.to_json()})  # the spec's class prompts


def read_config(path) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(json.loads((as_path(path) / "config.json").read_text()))


def steps(path) -> list[int]:
  """The finalized steps (on GCS a step folder exists before its save is committed)."""
  from orbax.checkpoint import utils
  folder = as_path(path) / "checkpoints"
  return sorted(utils.checkpoint_steps(folder)) if folder.is_dir() else []


def load_models(path, step: int | None = None, *, dtype=jnp.float32):
  """The run's models with the trained parameters of `step` (default: the latest) merged in, as
  a `pipeline.Models` bundle with the run spec and the training config.

  `dtype` is the compute dtype; parameters stay float32. Step 0 (or no checkpoint yet)
  gives the initial models.
  """
  import asva_jax
  from asva_jax.models.space_to_depth import SpaceToDepth
  from asva_jax.pipeline.models import Models
  from asva_jax.text_encodings import load_text_encodings
  from asva_jax.training import checkpoints
  from asva_jax.training.build import Trainee
  from asva_jax.training.state import split_model

  spec = read_spec(path)
  config = read_config(path)
  base = base_folder(path)
  unet = asva_jax.load_unet(base, dtype=dtype)
  audio = asva_jax.load_audio_encoder(base, dtype=dtype)
  if spec.autoencoder == "space_to_depth":
    autoencoder = SpaceToDepth(spec.autoencoder_factor)
  else:
    autoencoder = asva_jax.load_vae(base, dtype=dtype)
  model = Trainee(unet, autoencoder, audio)
  available = steps(path)
  latest = step is None
  if latest:
    step = available[-1] if available else 0
  if step:
    if step not in available:
      raise CheckpointError(f"{path}: no checkpoint for step {step} (available: {available or 'none'})")
    manager = checkpoints.make_manager(path, read_only=True)
    cfg = ml_collections.ConfigDict(config.to_dict())
    cfg.precision.frozen = "float32"
    _, params, _ = split_model(model, cfg)
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), params)
    # The latest step falls back past damaged ones, as training does; an asked-for step does not.
    older = [s for s in reversed(available) if s <= step]
    try:
      step, restored = checkpoints.restore_params(
          manager, older if latest else [step], target,
          hint=f"choose another step of {path} with --step (available: {available})")
    finally:
      manager.close()
    nnx.update(model, restored)
  encodings = {}
  for folder in (base / "text_encodings", as_path(path) / "text_encodings"):  # the run's own win
    if folder.is_dir():
      encodings.update(load_text_encodings(folder))
  return Models(unet=model.unet, autoencoder=model.autoencoder, audio_encoder=model.audio_encoder,
                text_encodings=encodings, spec=spec, config=config, step=int(step), source=str(path))
