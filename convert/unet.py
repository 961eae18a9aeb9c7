"""Video UNet conversion: AVSyncD `unet/` folders both ways, and inflation from SD1.5's 2-D UNet."""

from __future__ import annotations

import os
from pathlib import Path

from flax import nnx

from asva_jax.storage import write_json_atomic
from asva_jax.models.unet_3d import AudioUNet3D, build_unet, trainable
from asva_jax.models.unet_config import DEFAULT_CONFIG, UNet3DConfig
from asva_jax.torch_weights import (DIFFUSERS_WEIGHTS, export_state_dict, find_weights_file, load_into,
                                    open_state_dict, read_json_config, save_safetensors)
from convert.errors import ConversionError

CLASS_NAME = "AudioUNet3DConditionModel"


def _parse(config: dict, source: str) -> UNet3DConfig:
  try:
    return UNet3DConfig.from_dict(config, source=source)
  except ValueError as e:
    raise ConversionError(str(e)) from e


def import_unet(folder: str | os.PathLike, **options) -> tuple[AudioUNet3D, dict]:
  """An original AVSyncD `unet/` folder (config.json + safetensors or .bin) -> (module, config)."""
  config = read_json_config(folder, error=ConversionError)
  module = build_unet(_parse(config, str(Path(folder) / "config.json")), abstract=True, **options)
  weights = find_weights_file(folder, error=ConversionError)
  load_into(module, open_state_dict(weights, error=ConversionError), str(weights), error=ConversionError)
  return module, config


def inflated_config(config_2d: dict, audio_cross_attention_dim: int | None = None,
                    cross_attention_dim: int | None = None) -> dict:
  """SD1.5's 2-D config with the 3-D class and block types, as the original's `from_pretrained_2d`."""
  config = dict(config_2d)
  config["_class_name"] = CLASS_NAME
  for key in ("down_block_types", "mid_block_type", "up_block_types"):
    config[key] = DEFAULT_CONFIG[key]
  config.setdefault("audio_cross_attention_dim", DEFAULT_CONFIG["audio_cross_attention_dim"])
  if audio_cross_attention_dim is not None:
    config["audio_cross_attention_dim"] = audio_cross_attention_dim
  if cross_attention_dim is not None:
    config["cross_attention_dim"] = cross_attention_dim
  return config


def inflate_sd15(folder: str | os.PathLike, *, seed: int = 0, audio_cross_attention_dim=None,
                 **options) -> tuple[AudioUNet3D, dict]:
  """The initial video UNet from SD1.5's `unet/` (docs/reference.md §3.7).

  Every 2-D tensor is copied; the `_temp`/`_audio` parameters keep their
  initialisation (zeros for `conv_temp` and `attn_temp.to_out.0.weight`,
  PyTorch's default init otherwise). Stricter than the original: a 2-D tensor
  that finds no place, or a 2-D place without its tensor, is an error.
  """
  config = inflated_config(read_json_config(folder, error=ConversionError), audio_cross_attention_dim)
  module = build_unet(_parse(config, str(Path(folder) / "config.json")), seed=seed, **options)
  weights = find_weights_file(folder, error=ConversionError)
  sd15_part = nnx.All(nnx.Param, nnx.Not(trainable))
  load_into(module, open_state_dict(weights, error=ConversionError), str(weights), kind=sd15_part,
            error=ConversionError)
  return module, config


def export_unet(module: nnx.Module, config: dict, out_folder: str | os.PathLike) -> Path:
  """Writes `config.json` and `diffusion_pytorch_model.safetensors` that the original loads."""
  out_folder = Path(out_folder)
  out_folder.mkdir(parents=True, exist_ok=True)
  save_safetensors(export_state_dict(module), out_folder / DIFFUSERS_WEIGHTS[0])
  write_json_atomic(out_folder / "config.json", {**config, "_class_name": CLASS_NAME})
  return out_folder
