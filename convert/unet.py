"""Video UNet conversion: AVSyncD `unet/` folders both ways, and inflation from SD1.5's 2-D UNet."""

from __future__ import annotations

import json
import os
from pathlib import Path

import jax.numpy as jnp
from flax import nnx

from asva_jax.models.unet_3d import AudioUNet3D, build_unet, trainable
from asva_jax.models.unet_config import DEFAULT_CONFIG, UNet3DConfig
from convert import state_dict as sd

CLASS_NAME = "AudioUNet3DConditionModel"


def read_config(folder: str | os.PathLike) -> dict:
  path = Path(folder) / "config.json"
  if not path.is_file():
    raise sd.ConversionError(f"{path}: missing (a diffusers unet/ folder has config.json)")
  try:
    return json.loads(path.read_text())
  except json.JSONDecodeError as e:
    raise sd.ConversionError(f"{path}: not valid JSON ({e})") from e


def _parse(config: dict, source: str) -> UNet3DConfig:
  try:
    return UNet3DConfig.from_dict(config, source=source)
  except ValueError as e:
    raise sd.ConversionError(str(e)) from e


def import_unet(folder: str | os.PathLike, **options) -> tuple[AudioUNet3D, dict]:
  """An original AVSyncD `unet/` folder (config.json + safetensors or .bin) -> (module, config)."""
  config = read_config(folder)
  module = build_unet(_parse(config, str(Path(folder) / "config.json")), abstract=True, **options)
  weights = sd.find_weights_file(folder)
  sd.load_into(module, sd.TorchStateDict(weights), str(weights))
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
  """The initial video UNet from SD1.5's `unet/` (spec §3.7).

  Every 2-D tensor is copied; the `_temp`/`_audio` parameters keep their
  initialisation (zeros for `conv_temp` and `attn_temp.to_out.0.weight`,
  PyTorch's default init otherwise). Stricter than the original: a 2-D tensor
  that finds no place, or a 2-D place without its tensor, is an error.
  """
  config = inflated_config(read_config(folder), audio_cross_attention_dim)
  module = build_unet(_parse(config, str(Path(folder) / "config.json")), seed=seed, **options)
  weights = sd.find_weights_file(folder)
  state_2d = sd.TorchStateDict(weights)
  keymap = sd.torch_key_map(module)
  vars_ = sd.variables(module)
  expected = {k: sd.torch_shape(p, tuple(vars_[p].get_value().shape))
              for k, p in keymap.items() if not trainable(p)}
  sd.check_keys(expected, {k: sd.shape_of(state_2d, k) for k in state_2d}, str(weights))
  for key in expected:
    var = vars_[keymap[key]]
    var.set_value(jnp.asarray(sd.from_torch_layout(keymap[key], state_2d[key]), dtype=var.get_value().dtype))
  return module, config


def export_unet(module: nnx.Module, config: dict, out_folder: str | os.PathLike) -> Path:
  """Writes `config.json` and `diffusion_pytorch_model.safetensors` that the original loads."""
  out_folder = Path(out_folder)
  out_folder.mkdir(parents=True, exist_ok=True)
  sd.save_safetensors(sd.export_state_dict(module), out_folder / sd.DIFFUSERS_WEIGHTS[0])
  from asva_jax.checkpoint import write_json_atomic
  write_json_atomic(out_folder / "config.json", {**config, "_class_name": CLASS_NAME})
  return out_folder
