"""Orbax checkpoints of a run: `WORKDIR/checkpoints/<step>/`.

Each step holds
  params     the trainable parameters (float32 master weights)
  opt_state  the optimizer state
  meta       JSON: step, seed, the RNG key data, the host count of the writer
  data       grain's iterator state (one file per host)
  config     the run's config (JSON)
Saves are asynchronous (configurable); the last `train.keep` steps and every
milestone are kept. Restoring tries the latest step first and falls back to older
ones, with a warning naming the step that could not be read. Arrays are restored
onto the current mesh, whatever mesh wrote them.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import orbax.checkpoint as ocp
from absl import logging
from etils import epath
from orbax.checkpoint import checkpoint_managers as policies

import grain.python as grain

from asva_jax.storage import as_path

ITEMS = ("params", "opt_state", "meta", "data", "config")


def checkpoint_dir(workdir) -> epath.Path:
  return as_path(workdir) / "checkpoints"  # local or gs://


def make_manager(workdir, train_config=None, *, read_only: bool = False) -> ocp.CheckpointManager:
  keep, milestones, async_save = 1, (), False
  if train_config is not None:
    keep, milestones = int(train_config.keep), tuple(int(s) for s in train_config.milestones)
    async_save = bool(train_config.async_checkpoints)
  preserve = [policies.LatestN(max(keep, 1))]
  if milestones:
    preserve.append(policies.CustomSteps(list(milestones)))
  options = ocp.CheckpointManagerOptions(
      enable_async_checkpointing=async_save, read_only=read_only, create=not read_only,
      preservation_policy=policies.AnyPreservationPolicy(preserve))
  handlers = {"params": ocp.StandardCheckpointHandler(), "opt_state": ocp.StandardCheckpointHandler(),
              "meta": ocp.JsonCheckpointHandler(), "config": ocp.JsonCheckpointHandler(),
              "data": grain.PyGrainCheckpointHandler()}
  return ocp.CheckpointManager(checkpoint_dir(workdir), options=options, item_names=ITEMS,
                               item_handlers=handlers)


def save(manager: ocp.CheckpointManager, step: int, state: dict, data_iterator, meta: dict,
         config_json: str, *, force: bool = False) -> bool:
  args = ocp.args.Composite(
      params=ocp.args.StandardSave(state["params"]), opt_state=ocp.args.StandardSave(state["opt_state"]),
      meta=ocp.args.JsonSave(meta), config=ocp.args.JsonSave(json.loads(config_json)),
      data=grain.PyGrainCheckpointSave(data_iterator))
  return manager.save(step, args=args, force=force)


def abstract_like(tree, shardings):
  """ShapeDtypeStructs with the given shardings: the restore target on the current mesh."""
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)


def restore_params(manager: ocp.CheckpointManager, step: int, target):
  return manager.restore(step, args=ocp.args.Composite(params=ocp.args.StandardRestore(target)))["params"]


def restore_latest(manager: ocp.CheckpointManager, params_target, opt_target):
  """(step, params, opt_state, meta) of the newest readable step, or None when there is none."""
  for step in sorted(manager.all_steps(), reverse=True):
    try:
      items = dict(params=ocp.args.StandardRestore(params_target),
                   opt_state=ocp.args.StandardRestore(opt_target), meta=ocp.args.JsonRestore())
      restored = manager.restore(step, args=ocp.args.Composite(**items))
      return step, restored["params"], restored["opt_state"], dict(restored["meta"])
    except Exception as e:  # orbax raises many types for unreadable steps
      message = (f"checkpoint {Path(str(manager.directory)) / str(step)} is unreadable "
                 f"({type(e).__name__}: {str(e)[:200]}); falling back to the step before it")
      logging.warning(message)
      print(f"warning: {message}", flush=True)
  return None


def restore_data(manager: ocp.CheckpointManager, step: int, data_iterator) -> bool:
  """Puts grain's saved state of this host into `data_iterator`; False when it cannot."""
  try:
    manager.restore(step, args=ocp.args.Composite(data=grain.PyGrainCheckpointRestore(data_iterator)))
    return True
  except Exception as e:  # a missing or foreign per-host file
    logging.warning("data iterator state of step %d not restored (%s); restarting the stream at the step",
                    step, e)
    return False


def read_meta(workdir, step: int) -> dict:
  path = checkpoint_dir(workdir) / str(step) / "meta" / "metadata"
  return json.loads(path.read_text()) if path.is_file() else {}
