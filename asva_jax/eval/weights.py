"""Reading detector weight files and copying them into the evaluation networks by name.

Accepted files: `.safetensors`; `.pth` / `.bin` / `.pt` / `.ckpt` through
`torch.load(weights_only=True)` (tensors only, nothing else is unpickled); and,
only where a loader allows it, TorchScript archives through `torch.jit.load`,
which runs the archive's code: give it only detector files from a trusted source.

Our modules use PyTorch's attribute names, so a variable's PyTorch key is its
module path; only convolution and linear kernels change name and layout:
NNX `kernel` (*window, in, out)  <->  PyTorch `weight` (out, in, *window).
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from flax import nnx

from asva_jax.component_folders import describe_mismatch
from asva_jax.eval.errors import EvalModelError

TORCH_SUFFIXES = (".pth", ".bin", ".pt", ".ckpt")


def is_torchscript(path: str | os.PathLike) -> bool:
  """True for a TorchScript archive (a zip holding compiled `code/`), False for a plain state dict."""
  try:
    with zipfile.ZipFile(path) as z:
      return any("/code/" in name or name.startswith("code/") for name in z.namelist())
  except (zipfile.BadZipFile, OSError):
    return False


def _numpy(tensor) -> np.ndarray:
  import torch
  if tensor.dtype in (torch.bfloat16, torch.float16):
    tensor = tensor.float()
  return tensor.detach().cpu().numpy()


def read_state_dict(path: str | os.PathLike, what: str = "detector") -> dict[str, np.ndarray]:
  """Every tensor of a `.safetensors` or tensors-only PyTorch file, as numpy arrays.

  `what` names the network in error messages. A checkpoint wrapped as
  {"state_dict": {...}} is unwrapped. TorchScript archives are refused here
  (see `read_torchscript`).
  """
  path = Path(path)
  if not path.is_file():
    raise EvalModelError(f"{path}: no such {what} file")
  if path.suffix == ".safetensors":
    try:
      from safetensors.numpy import load_file
      return load_file(str(path))
    except Exception as numpy_error:  # bfloat16 has no numpy dtype: go through torch
      try:
        from safetensors.torch import load_file as load_torch
        return {k: _numpy(v) for k, v in load_torch(str(path)).items()}
      except Exception:
        raise EvalModelError(f"{path}: unreadable safetensors file ({numpy_error})") from numpy_error
  if path.suffix not in TORCH_SUFFIXES:
    raise EvalModelError(f"{path}: unknown {what} file type {path.suffix!r} "
                         f"(expected .safetensors or one of {', '.join(TORCH_SUFFIXES)})")
  if is_torchscript(path):
    raise EvalModelError(f"{path}: a TorchScript archive, not a state dict; the {what} loader does not "
                         "accept TorchScript (save its state_dict() as .safetensors)")
  import torch
  try:
    obj = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:
    raise EvalModelError(f"{path}: not a tensors-only PyTorch state dict ({e})") from e
  if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
    obj = obj["state_dict"]
  if not isinstance(obj, Mapping):
    raise EvalModelError(f"{path}: holds a {type(obj).__name__}, not a state dict")
  return {k: _numpy(v) for k, v in obj.items() if hasattr(v, "shape")}


def read_torchscript(path: str | os.PathLike, what: str = "detector"):
  """(state dict as numpy in module order, the loaded TorchScript module). Runs the archive's code."""
  import torch
  path = Path(path)
  if not path.is_file():
    raise EvalModelError(f"{path}: no such {what} file")
  try:
    module = torch.jit.load(str(path), map_location="cpu")
  except Exception as e:
    raise EvalModelError(f"{path}: not a loadable TorchScript {what} ({e})") from e
  return {k: _numpy(v) for k, v in module.state_dict().items()}, module


def torch_name(path: tuple) -> str:
  *parents, leaf = (str(p) for p in path)
  return ".".join(parents + ["weight" if leaf == "kernel" else leaf])


def _to_torch(array, leaf: str):
  if leaf == "kernel":
    n = array.ndim
    return np.transpose(array, (n - 1, n - 2) + tuple(range(n - 2)))
  return array


def _from_torch(array: np.ndarray, leaf: str) -> np.ndarray:
  if leaf == "kernel":
    n = array.ndim
    return np.transpose(array, tuple(range(2, n)) + (1, 0))
  return array


def _variables(module: nnx.Module) -> dict[tuple, nnx.Variable]:
  return {tuple(path): var for path, var in nnx.to_flat_state(nnx.state(module))}


def torch_shapes(module: nnx.Module) -> dict[str, tuple[int, ...]]:
  """PyTorch key -> PyTorch shape of every variable of `module` (which may be abstract)."""
  out = {}
  for path, var in _variables(module).items():
    shape = tuple(var.get_value().shape)
    if str(path[-1]) == "kernel":
      shape = (shape[-1], shape[-2]) + shape[:-2]
    out[torch_name(path)] = shape
  return out


def export_state_dict(module: nnx.Module) -> dict[str, np.ndarray]:
  """The module's variables under their PyTorch names and layouts (for round trips)."""
  return {torch_name(path): np.ascontiguousarray(_to_torch(np.asarray(var.get_value()), str(path[-1])))
          for path, var in _variables(module).items()}


def ignored(key: str) -> bool:
  """State-dict entries the networks do not use: BatchNorm's step counters."""
  return key.endswith("num_batches_tracked")


def load_state(module: nnx.Module, state_dict: Mapping[str, np.ndarray], source: str,
               skip: Callable[[str], bool] = ignored) -> nnx.Module:
  """Copies `state_dict` into `module` (which may be abstract) after checking names and shapes.

  The state dict must hold exactly the module's variables (entries where `skip`
  is true aside); otherwise an EvalModelError names `source` and the first
  missing, unexpected and mis-shaped keys, before anything is copied.
  """
  expected = torch_shapes(module)
  found = {k: tuple(np.shape(v)) for k, v in state_dict.items() if not skip(k)}
  report = describe_mismatch(expected, found, f"{source}: the tensors do not match the network "
                             f"({len(found)} in the file, {len(expected)} expected)")
  if report:
    raise EvalModelError(report)
  for path, var in _variables(module).items():
    value = _from_torch(np.asarray(state_dict[torch_name(path)]), str(path[-1]))
    var.set_value(jnp.asarray(value, jnp.float32))
  return module
