"""ImageBind audio encoder <-> PyTorch: `imagebind_huge.pth` and AVSyncD's `audio_encoder/` folder.

Two PyTorch namings hold the same tensors (docs/reference.md §4.8):
  * ImageBind's checkpoint: `modality_{preprocessors,trunks,heads,postprocessors}.audio.*`
    (other modalities are ignored; AVSyncD's new `final_layer_norm` is created with
    weight 1 and bias 0, as AVSyncD creates it);
  * AVSyncD's wrapper: `preprocessor.*`, `trunk.*`, `head.*`, `postprocessor.*`,
    `final_layer_norm.*` (179 tensors at full size, the buffer
    `postprocessor.1.log_logit_scale` included).
Our attention keeps its fused input projection as a Linear `in_proj` (kernel (D, 3D)),
the transpose of PyTorch's `in_proj_weight` (3D, D).

Dimensions: taken from `audio_config` (fields embed_dim, num_blocks, num_heads,
out_embed_dim, ...), else from the folder's config.json where it has them, else read off
the tensor shapes. The head count is the one dimension no tensor shape reveals: it is
ImageBind-Huge's (12) when the widths are Huge's (768 wide, 1024-d output), and must be
given (`audio_config`, `--audio-config`) for any other width; guessing would convert
without error into a model that computes something else.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
from flax import nnx

from asva_jax.storage import write_json_atomic
from asva_jax.models.imagebind_audio import (CLASS_NAME, ImageBindAudioConfig, ImageBindAudioEncoder,
                                             build_audio_encoder)
from asva_jax.torch_weights import (DIFFUSERS_WEIGHTS, StateDictFile, export_state_dict, find_weights_file,
                                    load_into, open_state_dict, save_safetensors)
from convert.errors import ConversionError

# AVSyncD's config.json fields (what `save_pretrained` of the original writes).
AVSYNCD_CONFIG = {"_class_name": CLASS_NAME, "_diffusers_version": "0.29.2", "n_segment": 12,
                  "pretrained_model_name": "imagebind-huge"}

IMAGEBIND_PREFIXES = {
    "preprocessor.": "modality_preprocessors.audio.",
    "trunk.": "modality_trunks.audio.",
    "head.": "modality_heads.audio.",
    "postprocessor.": "modality_postprocessors.audio.",
}
FINAL_NORM = ("final_layer_norm.weight", "final_layer_norm.bias")


def wrapper_name(key: str) -> str:
  """Generic NNX-derived key -> AVSyncD's name (`attn.in_proj.weight` -> `attn.in_proj_weight`)."""
  return key.replace(".attn.in_proj.weight", ".attn.in_proj_weight").replace(
      ".attn.in_proj.bias", ".attn.in_proj_bias")


def imagebind_name(key: str) -> str:
  """Generic NNX-derived key -> ImageBind checkpoint name (final_layer_norm.* unchanged)."""
  key = wrapper_name(key)
  for ours, theirs in IMAGEBIND_PREFIXES.items():
    if key.startswith(ours):
      return theirs + key[len(ours):]
  return key


class _WithFinalNorm(Mapping):
  """The audio tensors of an ImageBind checkpoint plus a fresh final LayerNorm (1, 0)."""

  def __init__(self, base: StateDictFile, embed_dim: int):
    self.base = base
    self.keys_ = [k for k in base if k.startswith(tuple(IMAGEBIND_PREFIXES.values()))]
    self.extra = {FINAL_NORM[0]: np.ones((embed_dim,), np.float32),
                  FINAL_NORM[1]: np.zeros((embed_dim,), np.float32)}

  def __getitem__(self, key: str) -> np.ndarray:
    return self.extra[key] if key in self.extra else self.base[key]

  def shape(self, key: str) -> tuple[int, ...]:
    return self.extra[key].shape if key in self.extra else self.base.shape(key)

  def __iter__(self) -> Iterator[str]:
    return iter(self.keys_ + list(self.extra))

  def __len__(self) -> int:
    return len(self.keys_) + len(self.extra)


def _infer_dimensions(sd: StateDictFile, name, source: str) -> dict:
  """Dimensions readable from tensor shapes (`name` maps a wrapper key to the file's key)."""
  def shape(key):
    if name(key) not in sd:
      raise ConversionError(f"{source}: missing tensor {name(key)} (not an ImageBind audio encoder?)")
    return sd.shape(name(key))
  embed_dim = shape("preprocessor.cls_token")[-1]
  kernel = shape("preprocessor.rgbt_stem.proj.weight")[-1]
  out_dim = shape("head.2.weight")[0]
  prefix = name("trunk.blocks.")
  blocks = {int(k[len(prefix):].split(".", 1)[0]) for k in sd if k.startswith(prefix)}
  dims = {"embed_dim": embed_dim, "kernel_size": kernel, "out_embed_dim": out_dim,
          "num_blocks": len(blocks)}
  huge = ImageBindAudioConfig()
  if (embed_dim, out_dim) == (huge.embed_dim, huge.out_embed_dim):
    dims["num_heads"] = huge.num_heads
  return dims


def _config(inferred: dict, *overrides: Mapping | None, source: str) -> ImageBindAudioConfig:
  merged = dict(inferred)
  for extra in overrides:
    merged.update({k: v for k, v in (extra or {}).items()
                   if k in ImageBindAudioConfig.DIMENSIONS or k in ("n_segment", "pretrained_model_name")})
  if "num_heads" not in merged:
    raise ConversionError(
        f"{source}: an audio encoder {merged['embed_dim']} wide with {merged['out_embed_dim']}-d output "
        f"is not ImageBind-Huge (768, 1024), and its attention head count cannot be read from the "
        f"tensors; give it with --audio-config '{{\"num_heads\": N}}' (a JSON string or file; "
        f"audio_config= in Python)")
  try:
    return ImageBindAudioConfig.from_dict(merged, source=source)
  except ValueError as e:
    raise ConversionError(str(e)) from e


def _load(sd: Mapping, config: ImageBindAudioConfig, source: str, rename) -> ImageBindAudioEncoder:
  module = build_audio_encoder(config, abstract=True)
  return load_into(module, sd, source, rename=rename, kind=nnx.Variable, error=ConversionError)


def import_imagebind(pth_path: str | os.PathLike, audio_config: dict | None = None
                     ) -> tuple[ImageBindAudioEncoder, dict]:
  """From ImageBind's own checkpoint (e.g. `imagebind_huge.pth`): the audio branch only."""
  sd = open_state_dict(pth_path, error=ConversionError)
  source = str(pth_path)
  config = _config(_infer_dimensions(sd, imagebind_name, source), audio_config, source=source)
  module = _load(_WithFinalNorm(sd, config.embed_dim), config, source, imagebind_name)
  return module, config.to_dict()


def import_audio_encoder(folder: str | os.PathLike, audio_config: dict | None = None
                         ) -> tuple[ImageBindAudioEncoder, dict]:
  """From AVSyncD's `audio_encoder/` folder (config.json + diffusers-named weights file)."""
  folder = Path(folder)
  path = find_weights_file(folder, DIFFUSERS_WEIGHTS, error=ConversionError)
  folder_config = {}
  if (folder / "config.json").is_file():
    try:
      folder_config = json.loads((folder / "config.json").read_text())
    except json.JSONDecodeError as e:
      raise ConversionError(f"{folder / 'config.json'}: not valid JSON ({e})") from e
  sd = open_state_dict(path, error=ConversionError)
  config = _config(_infer_dimensions(sd, lambda k: k, str(path)), folder_config, audio_config,
                   source=str(path))
  return _load(sd, config, str(path), wrapper_name), config.to_dict()


def export_audio_encoder(module: ImageBindAudioEncoder, config: Mapping | None, out_folder: str | os.PathLike
                         ) -> Path:
  """Writes AVSyncD's `audio_encoder/` folder: config.json and diffusion_pytorch_model.safetensors.

  The dimensions are the module's; `config` (our component config) supplies `n_segment`
  and `pretrained_model_name`. The written config holds AVSyncD's fields, plus the
  dimensions that differ from ImageBind-Huge (the original cannot load such a model
  anyway; our importer reads them back).
  """
  out_folder = Path(out_folder)
  sd = export_state_dict(module, rename=wrapper_name, kind=nnx.Variable)
  save_safetensors(sd, out_folder / DIFFUSERS_WEIGHTS[0])
  ours = ImageBindAudioConfig.from_dict(
      {**dataclasses.asdict(module.config),
       **{k: v for k, v in (config or {}).items() if k in ("n_segment", "pretrained_model_name")}})
  default = ImageBindAudioConfig()
  out = dict(AVSYNCD_CONFIG, n_segment=ours.n_segment, pretrained_model_name=ours.pretrained_model_name)
  out.update({k: getattr(ours, k) for k in ImageBindAudioConfig.DIMENSIONS
              if getattr(ours, k) != getattr(default, k)})
  write_json_atomic(out_folder / "config.json", out)
  return out_folder
