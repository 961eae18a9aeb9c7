"""Reading PyTorch state dicts safely, and the generic NNX <-> PyTorch name mapping.

Our NNX modules use PyTorch's attribute names, so a parameter's NNX path is its
PyTorch key with the leaf renamed and the layout changed:

    NNX leaf `kernel`, 4-D (kh, kw, in, out)  <->  `weight` (out, in, kh, kw)   Conv2d
    NNX leaf `kernel`, 2-D (in, out)          <->  `weight` (out, in)           Linear
    NNX leaf `scale`                          <->  `weight`                     norms
    anything else                             <->  same name, same layout

Components whose PyTorch names differ further pass `rename` functions.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from flax import nnx

from asva_jax.errors import AsvaError
from asva_jax.component_folders import describe_mismatch
from asva_jax.storage import umasked

DIFFUSERS_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
TRANSFORMERS_WEIGHTS = ("model.safetensors", "pytorch_model.bin")


class ConversionError(AsvaError, ValueError):
  """The PyTorch files cannot be converted: missing, unreadable or mismatched tensors."""


def find_weights_file(folder: str | os.PathLike, names=DIFFUSERS_WEIGHTS) -> Path:
  """The first of `names` present in `folder` (safetensors preferred)."""
  folder = Path(folder)
  if not folder.is_dir():
    raise ConversionError(f"{folder}: not a folder")
  for name in names:
    if (folder / name).is_file():
      return folder / name
  raise ConversionError(f"{folder}: no weights file (looked for {', '.join(names)})")


def read_json_config(folder: str | os.PathLike) -> dict:
  """`folder/config.json` as a dict, with errors naming the file."""
  path = Path(folder) / "config.json"
  if not path.is_file():
    raise ConversionError(f"{path}: missing")
  try:
    config = json.loads(path.read_text())
  except json.JSONDecodeError as e:
    raise ConversionError(f"{path}: not valid JSON ({e})") from e
  if not isinstance(config, dict):
    raise ConversionError(f"{path}: not a JSON object")
  return config


class TorchStateDict(Mapping):
  """Read-only view of a `.safetensors` or `.bin`/`.pth` state dict as numpy arrays.

  safetensors files are read lazily, one tensor at a time, so converting a
  full-size model needs little more than the converted weights in memory.
  `.bin`/`.pth` files are loaded with `torch.load(weights_only=True, mmap=True)`:
  tensors only, never arbitrary pickled objects.
  """

  def __init__(self, path: str | os.PathLike):
    self.path = Path(path)
    if not self.path.is_file():
      raise ConversionError(f"{self.path}: no such file")
    if self.path.suffix == ".safetensors":
      from safetensors import safe_open
      try:
        self._handle = safe_open(str(self.path), framework="pt")
        self._keys = list(self._handle.keys())
      except Exception as e:
        raise ConversionError(f"{self.path}: unreadable safetensors file ({e})") from e
      self._tensors = None
    else:
      import torch
      try:
        obj = torch.load(self.path, map_location="cpu", weights_only=True, mmap=True)
      except Exception as e:
        raise ConversionError(f"{self.path}: not a tensors-only PyTorch state dict ({e})") from e
      if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
      if not isinstance(obj, Mapping):
        raise ConversionError(f"{self.path}: holds a {type(obj).__name__}, not a state dict")
      self._tensors = {k: v for k, v in obj.items() if hasattr(v, "shape")}
      self._keys = list(self._tensors)

  def __getitem__(self, key: str) -> np.ndarray:
    import torch
    t = self._handle.get_tensor(key) if self._tensors is None else self._tensors[key]
    if t.dtype == torch.bfloat16:
      t = t.float()
    return t.detach().cpu().numpy()

  def shape(self, key: str) -> tuple[int, ...]:
    if self._tensors is None:
      return tuple(self._handle.get_slice(key).get_shape())
    return tuple(self._tensors[key].shape)

  def __iter__(self) -> Iterator[str]:
    return iter(self._keys)

  def __len__(self) -> int:
    return len(self._keys)

  def __contains__(self, key) -> bool:
    return key in set(self._keys)


def shape_of(state_dict: Mapping, key: str) -> tuple[int, ...]:
  if hasattr(state_dict, "shape") and callable(state_dict.shape):
    return state_dict.shape(key)
  return tuple(np.shape(state_dict[key]))


# --- leaf layout rules --------------------------------------------------------

def torch_leaf(path: tuple, ndim: int) -> tuple[str, Callable[[np.ndarray], np.ndarray]]:
  """The PyTorch key of an NNX variable path, and the function NNX array -> PyTorch array."""
  *parents, leaf = (str(p) for p in path)
  if leaf == "kernel" and ndim == 4:
    return ".".join(parents + ["weight"]), lambda a: np.transpose(a, (3, 2, 0, 1))
  if leaf == "kernel" and ndim == 2:
    return ".".join(parents + ["weight"]), lambda a: np.transpose(a)
  if leaf == "scale":
    return ".".join(parents + ["weight"]), lambda a: a
  return ".".join(parents + [leaf]), lambda a: a


def from_torch_layout(path: tuple, array: np.ndarray) -> np.ndarray:
  """Inverse of the layout change of `torch_leaf`."""
  leaf = str(path[-1])
  if leaf == "kernel" and array.ndim == 4:
    return np.transpose(array, (2, 3, 1, 0))
  if leaf == "kernel" and array.ndim == 2:
    return np.transpose(array)
  return array


def torch_shape(path: tuple, shape: tuple[int, ...]) -> tuple[int, ...]:
  _, to_torch = torch_leaf(path, len(shape))
  return tuple(to_torch(np.empty(shape, dtype=np.bool_)).shape)


def variables(module: nnx.Module, kind=nnx.Param) -> dict[tuple, nnx.Variable]:
  return {tuple(path): var for path, var in nnx.to_flat_state(nnx.state(module, kind))}


def torch_key_map(module: nnx.Module, rename: Callable[[str], str] | None = None,
                  kind=nnx.Param) -> dict[str, tuple]:
  """PyTorch key -> NNX path, for every variable of `module`."""
  out = {}
  for path, var in variables(module, kind).items():
    key, _ = torch_leaf(path, len(var.get_value().shape))
    out[rename(key) if rename else key] = path
  return out


def check_keys(expected: Mapping[str, tuple], found: Mapping[str, tuple], source: str,
               show: int = 5) -> None:
  """Raises ConversionError listing missing, unexpected and mis-shaped keys."""
  report = describe_mismatch(dict(expected), dict(found), f"{source}: the tensors do not match the model "
                             f"({len(found)} in the file, {len(expected)} expected)", show)
  if report:
    raise ConversionError(report)


def load_into(module: nnx.Module, state_dict: Mapping, source: str,
              rename: Callable[[str], str] | None = None, kind=nnx.Param,
              ignore: Callable[[str], bool] | None = None) -> nnx.Module:
  """Copies every tensor of `state_dict` into `module` (which may be abstract).

  The file must hold exactly the module's variables (keys in `ignore` aside);
  otherwise a ConversionError names the differences before anything is copied.
  Values keep the module's declared dtype.
  """
  keymap = torch_key_map(module, rename, kind)
  vars_ = variables(module, kind)
  expected = {k: torch_shape(p, tuple(vars_[p].get_value().shape)) for k, p in keymap.items()}
  found = {k: shape_of(state_dict, k) for k in state_dict if not (ignore and ignore(k))}
  check_keys(expected, found, source)
  for key, path in keymap.items():
    var = vars_[path]
    var.set_value(jnp.asarray(from_torch_layout(path, np.asarray(state_dict[key])), dtype=var.get_value().dtype))
  return module


def export_state_dict(module: nnx.Module, rename: Callable[[str], str] | None = None,
                      kind=nnx.Param) -> dict[str, np.ndarray]:
  """The module's variables under their PyTorch names and layouts (contiguous numpy)."""
  out = {}
  for path, var in variables(module, kind).items():
    key, to_torch = torch_leaf(path, len(var.get_value().shape))
    # np.array, not np.ascontiguousarray: the latter turns 0-d buffers into shape (1,).
    out[rename(key) if rename else key] = np.array(to_torch(np.asarray(var.get_value())), order="C")
  return out


def save_safetensors(state_dict: Mapping[str, np.ndarray], path: str | os.PathLike,
                     metadata: dict | None = None) -> None:
  """Writes a safetensors file atomically (temporary name, then rename)."""
  from safetensors.numpy import save_file
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(path.name + ".tmp")
  save_file(dict(state_dict), str(tmp), metadata=metadata or {"format": "pt"})
  os.chmod(tmp, umasked(0o666))
  os.replace(tmp, path)
