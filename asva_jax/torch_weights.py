"""PyTorch weight files <-> NNX modules: one name/layout rule table, one reader, one loader.

Our NNX modules use PyTorch's attribute names, so a variable's PyTorch key is its
NNX path with the leaf renamed and the layout changed (`RULES`):

    NNX leaf `kernel`, 2-D (in, out)              <->  `weight` (out, in)             Linear
    NNX leaf `kernel`, n-D (*window, in, out)     <->  `weight` (out, in, *window)    Conv1d/2d/3d
    NNX leaf `scale`                              <->  `weight`                       norms
    anything else                                 <->  same name, same layout

Components whose PyTorch names differ further pass `rename` functions. Both the
converters (convert/) and the evaluation networks (eval/) read through here.

Accepted files: `.safetensors` (read through numpy; torch only for bfloat16) and
`.pth` / `.bin` / `.pt` / `.ckpt` through `torch.load(weights_only=True)`: tensors
only, nothing else is unpickled. TorchScript archives are refused by the state-dict
reader; `read_torchscript` loads them with `torch.jit.load`, which runs the archive's
code: give it only files from a trusted source.
"""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from flax import nnx

from asva_jax.component_folders import describe_mismatch
from asva_jax.errors import AsvaError
from asva_jax.storage import umasked

DIFFUSERS_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
TRANSFORMERS_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
TORCH_SUFFIXES = (".pth", ".bin", ".pt", ".ckpt")


class WeightFileError(AsvaError, ValueError):
  """A PyTorch weight file is missing, unreadable, or its tensors do not fit the module.

  Callers pass their own subclass (`error=`) so that their messages keep their type.
  """


# --- the rule table ------------------------------------------------------------

def _kernel_to_torch(ndim: int) -> tuple[int, ...]:
  """(*window, in, out) -> (out, in, *window); for 2-D (in, out) -> (out, in)."""
  return (ndim - 1, ndim - 2) + tuple(range(ndim - 2))


def _kernel_from_torch(ndim: int) -> tuple[int, ...]:
  """(out, in, *window) -> (*window, in, out); the inverse of `_kernel_to_torch`."""
  return tuple(range(2, ndim)) + (1, 0)


# (NNX leaf, applies to rank, PyTorch leaf, NNX -> torch axes or None, torch -> NNX axes or None).
RULES: tuple[tuple[str, Callable[[int], bool], str, Callable | None, Callable | None], ...] = (
    ("kernel", lambda n: n >= 2, "weight", _kernel_to_torch, _kernel_from_torch),
    ("scale", lambda n: True, "weight", None, None),
)


def _rule(leaf: str, ndim: int):
  for nnx_leaf, applies, torch_leaf, to_torch, from_torch in RULES:
    if leaf == nnx_leaf and applies(ndim):
      return torch_leaf, to_torch, from_torch
  return leaf, None, None


def torch_key(path: tuple, ndim: int) -> tuple[str, Callable[[np.ndarray], np.ndarray]]:
  """The PyTorch key of an NNX variable path, and the function NNX array -> PyTorch array."""
  *parents, leaf = (str(p) for p in path)
  name, to_torch, _ = _rule(leaf, ndim)
  key = ".".join(parents + [name])
  if to_torch is None:
    return key, lambda a: a
  return key, lambda a: np.transpose(a, to_torch(ndim))


def from_torch_layout(path: tuple, array: np.ndarray) -> np.ndarray:
  """Inverse of the layout change of `torch_key`."""
  _, _, from_torch = _rule(str(path[-1]), array.ndim)
  return array if from_torch is None else np.transpose(array, from_torch(array.ndim))


def torch_shape(path: tuple, shape: tuple[int, ...]) -> tuple[int, ...]:
  _, to_torch = torch_key(path, len(shape))
  return tuple(to_torch(np.empty(shape, dtype=np.bool_)).shape)


def variables(module: nnx.Module, kind=nnx.Param) -> dict[tuple, nnx.Variable]:
  return {tuple(path): var for path, var in nnx.to_flat_state(nnx.state(module, kind))}


def torch_key_map(module: nnx.Module, rename: Callable[[str], str] | None = None,
                  kind=nnx.Param) -> dict[str, tuple]:
  """PyTorch key -> NNX path, for every variable of `module`."""
  out = {}
  for path, var in variables(module, kind).items():
    key, _ = torch_key(path, len(var.get_value().shape))
    out[rename(key) if rename else key] = path
  return out


def torch_shapes(module: nnx.Module, rename: Callable[[str], str] | None = None,
                 kind=nnx.Param) -> dict[str, tuple[int, ...]]:
  """PyTorch key -> PyTorch shape of every variable of `module` (which may be abstract)."""
  vars_ = variables(module, kind)
  return {key: torch_shape(path, tuple(vars_[path].get_value().shape))
          for key, path in torch_key_map(module, rename, kind).items()}


# --- reading files -------------------------------------------------------------

def is_torchscript(path: str | os.PathLike) -> bool:
  """True for a TorchScript archive (a zip holding compiled `code/`), False for a plain state dict."""
  try:
    with zipfile.ZipFile(path) as z:
      return any("/code/" in name or name.startswith("code/") for name in z.namelist())
  except (zipfile.BadZipFile, OSError):
    return False


def _numpy(tensor) -> np.ndarray:
  """A torch tensor as numpy; bfloat16 and float16 become float32 (numpy has no bfloat16)."""
  import torch
  if tensor.dtype in (torch.bfloat16, torch.float16):
    tensor = tensor.float()
  return tensor.detach().cpu().numpy()


def _file_noun(what: str | None) -> str:
  return f"{what} " if what else ""


class StateDictFile(Mapping):
  """Read-only, lazy view of a weight file's tensors as numpy arrays (float16/bfloat16 -> float32).

  safetensors files are read one tensor at a time, so converting a full-size model
  needs little more than the converted weights in memory; PyTorch files are
  memory-mapped when they are zip archives (every file `torch.save` writes today).
  """

  def __init__(self, path: str | os.PathLike, *, what: str | None = None,
               error: type[WeightFileError] = WeightFileError):
    self.path, self.error = Path(path), error
    self._torch_handle = None
    if self.path.suffix == ".safetensors":
      from safetensors import safe_open
      try:
        self._handle = safe_open(str(self.path), framework="numpy")
        self._keys = list(self._handle.keys())
      except Exception as e:
        raise error(f"{self.path}: unreadable safetensors file ({e})") from e
      self._tensors = None
    else:
      self._tensors = _read_torch_file(self.path, what, error)
      self._keys = list(self._tensors)
    self._key_set = set(self._keys)

  def __getitem__(self, key: str) -> np.ndarray:
    if key not in self._key_set:
      raise KeyError(key)
    if self._tensors is not None:
      return _numpy(self._tensors[key])
    try:
      if self._handle.get_slice(key).get_dtype() == "BF16":  # no numpy dtype: go through torch
        if self._torch_handle is None:
          from safetensors import safe_open
          self._torch_handle = safe_open(str(self.path), framework="pt")
        return _numpy(self._torch_handle.get_tensor(key))
      array = self._handle.get_tensor(key)
    except Exception as e:
      raise self.error(f"{self.path}: unreadable tensor {key} ({e})") from e
    return array.astype(np.float32) if array.dtype == np.float16 else array

  def shape(self, key: str) -> tuple[int, ...]:
    if self._tensors is None:
      return tuple(self._handle.get_slice(key).get_shape())
    return tuple(self._tensors[key].shape)

  def __iter__(self) -> Iterator[str]:
    return iter(self._keys)

  def __len__(self) -> int:
    return len(self._keys)

  def __contains__(self, key) -> bool:
    return key in self._key_set


def _read_torch_file(path: Path, what: str | None, error: type[WeightFileError]) -> dict:
  """The tensors (torch, not yet numpy) of a tensors-only PyTorch file; a {"state_dict": ...}
  wrapper is unwrapped."""
  if path.suffix not in TORCH_SUFFIXES:
    raise error(f"{path}: unknown {_file_noun(what)}file type {path.suffix!r} "
                f"(expected .safetensors or one of {', '.join(TORCH_SUFFIXES)})")
  if is_torchscript(path):
    raise error(f"{path}: a TorchScript archive, not a state dict; the {_file_noun(what)}loader does not "
                "accept TorchScript (save its state_dict() as .safetensors)")
  import torch
  try:
    obj = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
  except pickle.UnpicklingError as e:  # torch's own text spans lines and suggests weights_only=False
    raise error(f"{path}: not a tensors-only PyTorch state dict (torch.load(weights_only=True) refused it; "
                "nothing but tensors is unpickled here)") from e
  except Exception as e:
    raise error(f"{path}: not a tensors-only PyTorch state dict ({e})") from e
  if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
    obj = obj["state_dict"]
  if not isinstance(obj, Mapping):
    raise error(f"{path}: holds a {type(obj).__name__}, not a state dict")
  return {k: v for k, v in obj.items() if hasattr(v, "shape")}


def open_state_dict(path: str | os.PathLike, *, what: str | None = None,
                    error: type[WeightFileError] = WeightFileError) -> StateDictFile:
  """The tensors of a `.safetensors` or tensors-only PyTorch file, read lazily.

  `what` names the file in error messages ("no such I3D file"); `error` is the
  exception type raised (a WeightFileError subclass).
  """
  path = Path(path)
  if not path.is_file():
    raise error(f"{path}: no such {_file_noun(what)}file")
  return StateDictFile(path, what=what, error=error)


def read_torchscript(path: str | os.PathLike, what: str, error: type[WeightFileError] = WeightFileError):
  """(state dict as numpy in module order, the loaded TorchScript module). Runs the archive's code."""
  import torch
  path = Path(path)
  if not path.is_file():
    raise error(f"{path}: no such {what} file")
  try:
    module = torch.jit.load(str(path), map_location="cpu")
  except Exception as e:
    raise error(f"{path}: not a loadable TorchScript {what} ({e})") from e
  return {k: _numpy(v) for k, v in module.state_dict().items()}, module


def shape_of(state_dict: Mapping, key: str) -> tuple[int, ...]:
  """A tensor's shape without reading it, where the mapping can tell (`.shape(key)`)."""
  if hasattr(state_dict, "shape") and callable(state_dict.shape):
    return state_dict.shape(key)
  return tuple(np.shape(state_dict[key]))


def find_weights_file(folder: str | os.PathLike, names=DIFFUSERS_WEIGHTS,
                      error: type[WeightFileError] = WeightFileError) -> Path:
  """The first of `names` present in `folder` (safetensors preferred)."""
  folder = Path(folder)
  if not folder.is_dir():
    raise error(f"{folder}: not a folder")
  for name in names:
    if (folder / name).is_file():
      return folder / name
  raise error(f"{folder}: no weights file (looked for {', '.join(names)})")


def read_json_config(folder: str | os.PathLike, error: type[WeightFileError] = WeightFileError) -> dict:
  """`folder/config.json` as a dict, with errors naming the file."""
  path = Path(folder) / "config.json"
  if not path.is_file():
    raise error(f"{path}: missing")
  try:
    config = json.loads(path.read_text())
  except json.JSONDecodeError as e:
    raise error(f"{path}: not valid JSON ({e})") from e
  if not isinstance(config, dict):
    raise error(f"{path}: not a JSON object")
  return config


# --- loading and exporting -----------------------------------------------------

def batch_norm_counters(key: str) -> bool:
  """State-dict entries no NNX module holds: BatchNorm's step counters."""
  return key.endswith("num_batches_tracked")


def load_into(module: nnx.Module, state_dict: Mapping, source: str, *,
              rename: Callable[[str], str] | None = None, kind=nnx.Param,
              ignore: Callable[[str], bool] | None = None,
              error: type[WeightFileError] = WeightFileError, noun: str = "model") -> nnx.Module:
  """Copies every tensor of `state_dict` into the `kind` variables of `module` (which may be abstract).

  The file must hold exactly those variables (keys where `ignore` is true aside);
  otherwise `error` names `source` and the first missing, unexpected and mis-shaped
  keys, before anything is copied. Values take the module's declared dtype.
  """
  keymap = torch_key_map(module, rename, kind)
  vars_ = variables(module, kind)
  expected = {k: torch_shape(p, tuple(vars_[p].get_value().shape)) for k, p in keymap.items()}
  found = {k: shape_of(state_dict, k) for k in state_dict if not (ignore and ignore(k))}
  report = describe_mismatch(expected, found, f"{source}: the tensors do not match the {noun} "
                             f"({len(found)} in the file, {len(expected)} expected)")
  if report:
    raise error(report)
  for key, path in keymap.items():
    var = vars_[path]
    var.set_value(jnp.asarray(from_torch_layout(path, np.asarray(state_dict[key])), dtype=var.get_value().dtype))
  return module


def export_state_dict(module: nnx.Module, rename: Callable[[str], str] | None = None,
                      kind=nnx.Param) -> dict[str, np.ndarray]:
  """The module's variables under their PyTorch names and layouts (contiguous numpy)."""
  out = {}
  for path, var in variables(module, kind).items():
    key, to_torch = torch_key(path, len(var.get_value().shape))
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
