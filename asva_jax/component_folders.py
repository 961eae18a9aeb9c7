"""JAX checkpoint folders: one sub-folder per component, each `config.json` + Orbax `params/`.

    CKPT/unet/config.json            the component's config (original PyTorch field names)
    CKPT/unet/params/                Orbax checkpoint of the module's variables
    CKPT/vae/..., CKPT/text_encoder/..., CKPT/audio_encoder/...

Variables are stored as a nested dict keyed by the module's attribute path, which
is the PyTorch name of the parameter with `weight` spelled `kernel`/`scale`; so
the stored tree is readable without this library.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from asva_jax.errors import AsvaError
from asva_jax.storage import as_path, write_json_atomic

if TYPE_CHECKING:
  from etils import epath
  from flax import nnx

# jax and flax are imported inside the functions that use them: the command-line tools
# import this module and should fail fast on bad input.


class CheckpointError(AsvaError, ValueError):
  """A checkpoint folder is missing, incomplete or does not match the model."""


def load_config(component_dir: str | os.PathLike) -> dict:
  path = as_path(component_dir) / "config.json"
  if not path.is_file():
    raise CheckpointError(f"{path}: no config.json (is {component_dir} a converted component folder?)")
  try:
    return json.loads(path.read_text())
  except json.JSONDecodeError as e:
    raise CheckpointError(f"{path}: not valid JSON ({e})") from e


def _nest(flat: dict[tuple, Any]) -> dict:
  tree: dict = {}
  for path, value in flat.items():
    node = tree
    for key in path[:-1]:
      node = node.setdefault(str(key), {})
    node[str(path[-1])] = value
  return tree


def _flatten(tree: dict, prefix: tuple = ()) -> dict[tuple, Any]:
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      out.update(_flatten(value, prefix + (key,)))
    else:
      out[prefix + (key,)] = value
  return out


def _flat_variables(module: nnx.Module) -> dict[tuple, nnx.Variable]:
  from flax import nnx
  return {tuple(str(p) for p in path): var for path, var in nnx.to_flat_state(nnx.state(module))}


def save_module(component_dir: str | os.PathLike, module: nnx.Module, config: dict) -> None:
  """Writes `config.json` and the module's variables (Orbax writes atomically)."""
  import orbax.checkpoint as ocp

  component_dir = as_path(component_dir)
  component_dir.mkdir(parents=True, exist_ok=True)
  tree = _nest({path: np.asarray(var.get_value()) for path, var in _flat_variables(module).items()})
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(component_dir / "params", tree, force=True)
    ckptr.wait_until_finished()
  write_json_atomic(component_dir / "config.json", config)


def restore_module(component_dir: str | os.PathLike, module: nnx.Module) -> nnx.Module:
  """Fills `module` (typically built with `nnx.eval_shape`) with the stored variables.

  Every variable of the module must be in the checkpoint with the same shape;
  values are cast to the module's declared dtype.
  """
  import orbax.checkpoint as ocp

  params_dir = as_path(component_dir) / "params"
  if not params_dir.is_dir():
    raise CheckpointError(f"{params_dir}: missing (expected an Orbax checkpoint of the component)")
  import jax
  import jax.numpy as jnp
  variables = _flat_variables(module)
  with ocp.StandardCheckpointer() as ckptr:
    try:
      meta = ckptr.metadata(params_dir)
      stored_tree = meta.item_metadata.tree if hasattr(meta, "item_metadata") else meta.tree
    except Exception as e:  # orbax raises several types for unreadable folders
      raise CheckpointError(f"{params_dir}: unreadable Orbax checkpoint ({e})") from e
    stored = {path: tuple(m.shape) for path, m in _flatten(dict(stored_tree)).items()}
    expected = {path: tuple(v.get_value().shape) for path, v in variables.items()}
    report = describe_mismatch({".".join(p): s for p, s in expected.items()},
                               {".".join(p): s for p, s in stored.items()},
                               f"{params_dir}: stored variables do not match the model")
    if report:
      raise CheckpointError(report)
    target = _nest({p: jax.ShapeDtypeStruct(expected[p], _stored_dtype(m))
                    for p, m in _flatten(dict(stored_tree)).items()})
    restored = _flatten(ckptr.restore(params_dir, target))
  for path, var in variables.items():
    var.set_value(jnp.asarray(restored[path], dtype=var.get_value().dtype))
  return module


def _stored_dtype(meta) -> Any:
  import jax.numpy as jnp
  return getattr(meta, "dtype", None) or jnp.float32


def describe_mismatch(expected: dict[str, tuple], found: dict[str, tuple], header: str,
                      show: int = 5) -> str | None:
  """None when `found` has exactly the `expected` names and shapes, else a report listing the
  missing, unexpected and mis-shaped names (counts and the first `show` of each)."""
  missing = sorted(set(expected) - set(found))
  unexpected = sorted(set(found) - set(expected))
  misshaped = sorted(k for k in set(expected) & set(found) if tuple(expected[k]) != tuple(found[k]))
  if not (missing or unexpected or misshaped):
    return None
  more = lambda names: " ..." if len(names) > show else ""
  lines = [header]
  if missing:
    lines.append(f"  {len(missing)} missing: {', '.join(missing[:show])}{more(missing)}")
  if unexpected:
    lines.append(f"  {len(unexpected)} unexpected: {', '.join(unexpected[:show])}{more(unexpected)}")
  if misshaped:
    lines.append(f"  {len(misshaped)} with wrong shape: " + ", ".join(
        f"{k} {tuple(found[k])} (expected {tuple(expected[k])})" for k in misshaped[:show]) + more(misshaped))
  return "\n".join(lines)


def component_dir(path: str | os.PathLike, name: str) -> epath.Path:
  """`path/name` when `path` is a whole checkpoint folder, else `path` itself.

  Lets every loader take either the converted checkpoint root or one component folder.
  """
  path = as_path(path)
  if (path / name / "config.json").is_file():
    return path / name
  if (path / "config.json").is_file():
    return path
  raise CheckpointError(f"{path}: neither a checkpoint folder with {name}/config.json "
                        f"nor a {name} folder with config.json")


def load_component(path: str | os.PathLike, name: str,
                   make_module: Callable[[dict, str], nnx.Module]) -> nnx.Module:
  """The `name` component of a checkpoint (root or component folder) with its stored weights.

  `make_module(config, source)` builds the module from the stored config (`source`
  names the config file for error messages); it runs under `nnx.eval_shape`, so no
  weights are allocated before the stored ones are read.
  """
  from flax import nnx
  folder = component_dir(path, name)
  config = load_config(folder)
  abstract = nnx.eval_shape(lambda: make_module(config, str(folder / "config.json")))
  return restore_module(folder, abstract)
