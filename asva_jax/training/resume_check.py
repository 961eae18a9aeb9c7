"""May a rerun in an existing workdir resume the run that is there?

A rerun continues its workdir or refuses; it never restarts it or trains another
model into it. Fields that define what is trained (model, trainable set, diffusion,
precision of the params, optimizer, seed, data) must equal the workdir's recorded
`config.json`, and the trainable parameters and optimizer state must have the names,
shapes and dtypes that the checkpoint recorded. Fields about how the run executes
(`MAY_CHANGE`) may differ: the run resumes and says what changed. Both checks run
before anything in the workdir is written.
"""

from __future__ import annotations

import json

import jax

from asva_jax.errors import AsvaError
from asva_jax.storage import as_path

# Dotted config fields (or whole sections) a resumed run may change: how long, how often, on which
# machines, with how much memory; none of them changes the state a checkpoint holds.
MAY_CHANGE = (
    "train.num_steps", "train.log_every", "train.checkpoint_every", "train.keep", "train.milestones",
    "train.async_checkpoints", "train.batch_size", "train.grad_accum", "mesh", "data.worker_count",
    "data.dir", "data.use_vae_latents", "log", "remat", "precision.compute", "precision.frozen",
    "model.attention", "model.audio_keys", "xla_backend_optimization_level")

NEW_WORKDIR = ("train the new config in a new --workdir (there is no --config.train.restart_from_scratch: "
               "a rerun never overwrites a run)")
SHOWN = 6  # differences listed in one error line


class IncompatibleRun(AsvaError):
  """The rerun's config or state differs from the run in its workdir."""


def flatten(tree: dict, prefix: str = "") -> dict:
  """{"a.b": value} of a nested config dict (JSON values: lists for tuples)."""
  out = {}
  for key, value in tree.items():
    name = f"{prefix}{key}"
    if isinstance(value, dict) and value:
      out.update(flatten(value, name + "."))
    else:
      out[name] = value
  return out


def may_change(field: str) -> bool:
  return any(field == f or field.startswith(f + ".") for f in MAY_CHANGE)


def config_changes(recorded: dict, config) -> tuple[list[str], list[str]]:
  """(refused, allowed) differences between the recorded config and `config`, one text each."""
  from asva_jax.training.defaults import base_config
  old, new = flatten(recorded), flatten(json.loads(config.to_json()))
  defaults = flatten(json.loads(base_config().to_json()))
  refused, allowed = [], []
  for field in sorted(old.keys() | new.keys()):
    if field in old and field in new and old[field] == new[field]:
      continue
    if field not in old:
      # Recorded by an older version without the field: it ran with the default.
      text = f"{field}: not recorded, now {new[field]!r}"
      ok = new[field] == defaults.get(field, new[field])
    elif field not in new:
      text, ok = f"{field}: {old[field]!r}, no longer a config field", True
    else:
      text, ok = f"--config.{field}: {old[field]!r} in the workdir, {new[field]!r} now", False
    (allowed if ok or may_change(field) else refused).append(text)
  return refused, allowed


def check_config(workdir, config) -> list[str]:
  """Refuses state-changing differences to WORKDIR/config.json; returns the allowed ones."""
  file = as_path(workdir) / "config.json"  # local or gs://
  if not file.is_file():
    return []
  try:
    recorded = json.loads(file.read_text())
  except (OSError, ValueError) as e:
    raise IncompatibleRun(f"{file}: unreadable ({e}); cannot tell whether this run may resume it; "
                          f"{NEW_WORKDIR}") from e
  refused, allowed = config_changes(recorded, config)
  if refused:
    raise IncompatibleRun(f"--workdir={workdir} holds a run with another config, and these fields change "
                          f"what it trains: {listing(refused)}. Rerun with the workdir's values, or "
                          f"{NEW_WORKDIR}")
  return allowed


def listing(items: list[str]) -> str:
  shown = "; ".join(items[:SHOWN])
  return shown + (f"; and {len(items) - SHOWN} more" if len(items) > SHOWN else "")


def signature(tree) -> dict[str, tuple[tuple[int, ...], str]]:
  """{"a.b.value": (shape, dtype)} of arrays, abstract arrays or Orbax array metadata."""
  def name(key) -> str:
    for attr in ("key", "idx", "name"):
      if hasattr(key, attr):
        return str(getattr(key, attr))
    return str(key)
  return {".".join(name(k) for k in path): (tuple(int(d) for d in leaf.shape), str(jax.numpy.dtype(leaf.dtype)))
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def state_differences(recorded: dict, current: dict) -> list[str]:
  def show(entry):
    return f"{entry[1]}{list(entry[0])}"
  out = []
  for name in sorted(recorded.keys() | current.keys()):
    if name not in current:
      out.append(f"{name} {show(recorded[name])} is not in this run")
    elif name not in recorded:
      out.append(f"{name} {show(current[name])} is new")
    elif recorded[name] != current[name]:
      out.append(f"{name}: {show(recorded[name])} in the checkpoint, {show(current[name])} now")
  return out


def check_state(step_dir, recorded: dict[str, dict], current: dict[str, dict]) -> None:
  """Refuses when a checkpoint's trees (per item: params, opt_state) differ from this run's."""
  differences = [f"{item} {d}" for item in current
                 for d in state_differences(recorded[item], current[item])]
  if differences:
    raise IncompatibleRun(f"checkpoint {step_dir} holds other trainable parameters than this run builds: "
                          f"{listing(differences)}. Rerun with the config the workdir was trained with, or "
                          f"{NEW_WORKDIR}")
