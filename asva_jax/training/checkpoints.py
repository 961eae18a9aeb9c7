"""Orbax checkpoints of a run: `WORKDIR/checkpoints/<step>/`.

Each step holds
  params     the trainable parameters (float32 master weights)
  opt_state  the optimizer state
  ema        the EMA of the params (only in runs with train.ema_decay > 0; `training.ema`)
  meta       JSON: step, seed, the RNG key data, the host count of the writer
  config     the run's config (JSON)
Saves are asynchronous (configurable); the last `train.keep` steps and every
milestone are kept (Orbax deletes the others; nothing else deletes a step). An
interrupted save leaves a temporary folder that is not a step. Restoring tries the
latest step first and falls back to an older one only when a step is damaged
(missing or corrupt files), with a warning naming it. A step whose trees differ from
the run's (another model or optimizer) is refused, never skipped
(`resume_check`). Arrays are restored onto the current mesh, whatever mesh wrote
them. The data stream is not saved: it is a function of the step
(`data.stream.GlobalOrder`), so a resumed run restarts it at the restored step
on any number of hosts. (Steps written before 2026-12-05 also hold grain's iterator
state, a `data` item; restoring reads only the items above, so they still resume.)
"""

from __future__ import annotations

import json

import jax
import orbax.checkpoint as ocp
from absl import logging
from etils import epath
from orbax.checkpoint import checkpoint_managers as policies

from asva_jax.errors import AsvaError
from asva_jax.storage import as_path
from asva_jax.training import resume_check

ITEMS = ("params", "opt_state", "ema", "meta", "config")


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
              "ema": ocp.StandardCheckpointHandler(),
              "meta": ocp.JsonCheckpointHandler(), "config": ocp.JsonCheckpointHandler()}
  return ocp.CheckpointManager(checkpoint_dir(workdir), options=options, item_names=ITEMS,
                               item_handlers=handlers)


def save(manager: ocp.CheckpointManager, step: int, state: dict, meta: dict, config_json: str, *,
         force: bool = False) -> bool:
  args = ocp.args.Composite(
      params=ocp.args.StandardSave(state["params"]), opt_state=ocp.args.StandardSave(state["opt_state"]),
      meta=ocp.args.JsonSave(meta), config=ocp.args.JsonSave(json.loads(config_json)),
      **({"ema": ocp.args.StandardSave(state["ema"])} if "ema" in state else {}))
  return manager.save(step, args=args, force=force)


def abstract_like(tree, shardings):
  """ShapeDtypeStructs with the given shardings: the restore target on the current mesh."""
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)


def recorded_state(step_dir, items=("params", "opt_state")) -> dict[str, dict]:
  """{item: signature} of the arrays a step recorded; raises when their metadata is unreadable."""
  handler = ocp.StandardCheckpointHandler()
  return {item: resume_check.signature(handler.metadata(epath.Path(step_dir) / item)) for item in items}


def check_resumable(workdir, config, model) -> None:
  """Before anything is written: refuses when the newest readable step holds other trees than
  the ones `model` and the config's optimizer give."""
  from flax import nnx
  from asva_jax.training.build import trainable_filter
  from asva_jax.training.ema import has_ema
  from asva_jax.training.state import make_optimizer
  directory = checkpoint_dir(workdir)
  if not directory.is_dir():
    return
  params = nnx.state(model, trainable_filter(config.model))
  current = {"params": resume_check.signature(params),
             "opt_state": resume_check.signature(jax.eval_shape(make_optimizer(config.train).init, params))}
  if has_ema(config.train):
    current["ema"] = current["params"]
  for step in sorted(ocp.path.step.checkpoint_steps(epath.Path(directory)), reverse=True):
    try:
      recorded = recorded_state(directory / str(step), tuple(current))
    except Exception:  # noqa: BLE001 - damaged: restore_latest reports it and falls back
      continue
    resume_check.check_state(directory / str(step), recorded, current)
    return


def restore_newest(manager: ocp.CheckpointManager, steps, targets: dict, *, json_items=(), hint: str):
  """(step, {item: restored}) of the first readable step of `steps`, or None when `steps` is empty.

  Goes past damaged steps only (missing or corrupt files, with a warning naming each);
  refuses (`resume_check.IncompatibleRun`) a step whose trees differ from `targets`, and
  (`DamagedCheckpoints`, ending with `hint`) when no step reads.
  """
  current = {item: resume_check.signature(target) for item, target in targets.items()}
  damaged = []
  for step in steps:
    step_dir = epath.Path(manager.directory) / str(step)  # not pathlib: keeps gs://
    try:
      recorded = recorded_state(step_dir, tuple(targets))
    except Exception as e:  # noqa: BLE001 - missing or corrupt metadata: orbax/json raise many types
      damaged.append(report_damaged(step_dir, e))
      continue
    resume_check.check_state(step_dir, recorded, current)
    args = {item: ocp.args.StandardRestore(target) for item, target in targets.items()}
    args.update({item: ocp.args.JsonRestore() for item in json_items})
    try:
      return step, manager.restore(step, args=ocp.args.Composite(**args))
    except Exception as e:  # noqa: BLE001 - the trees match, so a failure is a damaged file
      damaged.append(report_damaged(step_dir, e))
  if damaged:
    raise DamagedCheckpoints(f"{manager.directory}: no checkpoint can be read ({'; '.join(damaged)}); {hint}")
  return None


def restore_latest(manager: ocp.CheckpointManager, targets: dict):
  """(step, {item: restored}, meta) of the newest readable step, or None when there is no step;
  `targets`: {"params", "opt_state"[, "ema"]} -> the abstract arrays to restore them as."""
  found = restore_newest(manager, sorted(manager.all_steps(), reverse=True), targets, json_items=("meta",),
                         hint="move the damaged step folders out of it to restart the run from step 0, "
                              "or train in a new --workdir")
  if found is None:
    return None
  step, restored = found
  return step, {item: restored[item] for item in targets}, dict(restored["meta"])


def restore_params(manager: ocp.CheckpointManager, steps: list[int], target, *, hint: str,
                   item: str = "params"):
  """(step, params) of the first readable step of `steps` (for sampling and export); `item="ema"`
  reads the EMA weights instead."""
  step, restored = restore_newest(manager, steps, {item: target}, hint=hint)
  return step, restored[item]


class DamagedCheckpoints(AsvaError):
  """Every step of a workdir is damaged."""


def report_damaged(step_dir, error: Exception) -> str:
  reason = f"{type(error).__name__}: {' '.join(str(error).split())[:200]}"
  message = f"checkpoint {step_dir} is unreadable ({reason}); trying the step before it"
  logging.warning(message)
  print(f"warning: {message}", flush=True)
  return f"{step_dir.name}: {reason}"
