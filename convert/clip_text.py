"""transformers `CLIPTextModel` folders, CLIP tokenizer files and AVSyncD's precomputed
text encodings -> asva-jax (and the text encoder back to transformers)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from flax import nnx

from asva_jax.storage import write_json_atomic
from asva_jax.models.clip_text import CLIPTextConfig, CLIPTextModel
from asva_jax.models.clip_tokenizer import TOKENIZER_FILES
from asva_jax.text_encodings import ENCODINGS_FILE, NULL_PROMPT
from asva_jax.torch_weights import (TRANSFORMERS_WEIGHTS, export_state_dict, find_weights_file, load_into,
                                    open_state_dict, read_json_config, save_safetensors)
from convert.errors import ConversionError

WEIGHTS_NAME = TRANSFORMERS_WEIGHTS[0]
# transformers < 5 nested the tower under `text_model.`; SD1.5's files still do.
LEGACY_PREFIX = "text_model."
# The one prompt of TheGreatestHits, whose encodings file holds a bare tensor.
SINGLE_TENSOR_PROMPT = "hitting with a stick"


def _torch_name(key: str) -> str:
  """nnx.Embed's `embedding` is PyTorch's `weight`."""
  return key[:-len("embedding")] + "weight" if key.endswith(".embedding") else key


def import_text_encoder(folder: str | os.PathLike, *, dtype=None,
                        param_dtype=jnp.float32) -> tuple[CLIPTextModel, dict]:
  """Reads a transformers `text_encoder/` folder; returns the filled module and its config dict.

  Accepts both key namings (with and without `text_model.`) and skips the
  `position_ids` buffer older transformers saved.
  """
  config = read_json_config(folder, error=ConversionError)
  source = str(Path(folder) / "config.json")
  try:
    cfg = CLIPTextConfig.from_transformers(config, source=source)
  except (TypeError, ValueError) as e:
    raise ConversionError(str(e) if source in str(e) else f"{source}: {e}") from e
  weights = find_weights_file(folder, TRANSFORMERS_WEIGHTS, error=ConversionError)
  state_dict = open_state_dict(weights, error=ConversionError)
  prefix = LEGACY_PREFIX if any(k.startswith(LEGACY_PREFIX) for k in state_dict) else ""
  module = nnx.eval_shape(lambda: CLIPTextModel(cfg, dtype=dtype, param_dtype=param_dtype, rngs=nnx.Rngs(0)))
  load_into(module, state_dict, str(weights), rename=lambda k: prefix + _torch_name(k),
            ignore=lambda k: k.endswith("position_ids"), error=ConversionError)
  return module, config


def export_text_encoder(module: CLIPTextModel, config: dict | None, out_folder: str | os.PathLike) -> None:
  """Writes `config.json` + `model.safetensors` loadable by `CLIPTextModel.from_pretrained` (transformers 5 names)."""
  out_folder = Path(out_folder)
  out = dict(config or {})
  out.update(module.config.to_transformers())
  save_safetensors(export_state_dict(module, rename=_torch_name), out_folder / WEIGHTS_NAME)
  write_json_atomic(out_folder / "config.json", out)


def copy_tokenizer(src_folder: str | os.PathLike, dst_folder: str | os.PathLike) -> None:
  """Copies a CLIP tokenizer folder after checking that `CLIPTokenizer` loads it."""
  from transformers import CLIPTokenizer
  src, dst = Path(src_folder), Path(dst_folder)
  missing = [f for f in TOKENIZER_FILES if not (src / f).is_file()]
  if missing:
    raise ConversionError(f"{src}: not a CLIP tokenizer folder (missing {', '.join(missing)})")
  try:
    CLIPTokenizer.from_pretrained(str(src))
  except Exception as e:  # transformers raises assorted types for broken vocabularies
    raise ConversionError(f"{src}: CLIPTokenizer cannot load it ({e})") from e
  dst.mkdir(parents=True, exist_ok=True)
  for path in sorted(src.iterdir()):
    if path.is_file() and not path.name.startswith("."):
      tmp = dst / (path.name + ".tmp")
      shutil.copyfile(path, tmp)
      os.replace(tmp, dst / path.name)


def _as_encoding(tensor, source: str) -> np.ndarray:
  import torch
  if not isinstance(tensor, torch.Tensor):
    raise ConversionError(f"{source}: holds a {type(tensor).__name__}, expected a tensor")
  array = tensor.detach().float().cpu().numpy()
  while array.ndim > 2 and array.shape[0] == 1:
    array = array[0]
  if array.ndim != 2:
    raise ConversionError(f"{source}: encoding of shape {tuple(tensor.shape)}, expected (77, D)")
  return np.ascontiguousarray(array, dtype=np.float32)


def import_text_encodings(paths: Sequence[str | os.PathLike], *,
                          single_tensor_prompt: str = SINGLE_TENSOR_PROMPT) -> dict[str, np.ndarray]:
  """Reads the original's precomputed encodings (`torch.load(weights_only=True)`): prompt -> (77, D) float32.

  A `{prompt: tensor}` file contributes its prompts. A file holding one tensor is
  the null encoding (key `""`) when its name contains "null"
  (`openai-clip-l_null_text_encoding.pt`), else `single_tensor_prompt`
  (TheGreatestHits' `class_clip_text_encodings_*.pt`). Leading size-1 axes are dropped.
  """
  import torch
  out: dict[str, np.ndarray] = {}
  for path in map(Path, paths):
    if not path.is_file():
      raise ConversionError(f"{path}: no such file")
    try:
      obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
      raise ConversionError(f"{path}: not a tensors-only PyTorch file ({e})") from e
    if isinstance(obj, Mapping):
      found = {}
      for prompt, tensor in obj.items():
        if not isinstance(prompt, str):
          raise ConversionError(f"{path}: key {prompt!r} is not a prompt string")
        found[prompt] = _as_encoding(tensor, f"{path} [{prompt!r}]")
    else:
      prompt = NULL_PROMPT if "null" in path.name.lower() else single_tensor_prompt
      found = {prompt: _as_encoding(obj, str(path))}
    for prompt, array in found.items():
      if prompt in out and not np.array_equal(out[prompt], array):
        raise ConversionError(f"{path}: encoding of {prompt!r} differs from the one read from an earlier file")
      out[prompt] = array
  shapes = {a.shape for a in out.values()}
  if len(shapes) > 1:
    raise ConversionError(f"{', '.join(map(str, paths))}: encodings of different shapes {sorted(shapes)}")
  return out


def save_text_encodings(encodings: Mapping[str, np.ndarray], dst_folder: str | os.PathLike) -> None:
  """Writes the `text_encodings/` component: `dst_folder` is that folder itself (e.g. `DIR/text_encodings`)."""
  dst = Path(dst_folder)
  if not encodings:
    raise ConversionError(f"{dst}: no text encodings to save")
  prompts = sorted(encodings)
  tensors = {str(i): np.ascontiguousarray(encodings[p], dtype=np.float32) for i, p in enumerate(prompts)}
  shapes = sorted({t.shape for t in tensors.values()})
  save_safetensors(tensors, dst / ENCODINGS_FILE)
  write_json_atomic(dst / "config.json", {"prompts": prompts, "shape": list(shapes[0]) if len(shapes) == 1 else None})
