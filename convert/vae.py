"""diffusers `AutoencoderKL` folders (config.json + weights) <-> our NNX `AutoencoderKL`."""

from __future__ import annotations

import os
import re
from pathlib import Path

import jax.numpy as jnp
from flax import nnx

from asva_jax.storage import write_json_atomic
from asva_jax.models.vae import AutoencoderKL, VAEConfig
from asva_jax.torch_weights import (DIFFUSERS_WEIGHTS, export_state_dict, find_weights_file, load_into,
                                    open_state_dict, read_json_config, save_safetensors)
from convert.errors import ConversionError

WEIGHTS_NAME = DIFFUSERS_WEIGHTS[0]

# diffusers < 0.14 named the mid-block attention projections differently; its
# loader still renames them, so files in the wild may carry either naming.
_LEGACY_ATTENTION = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
_ATTENTION_KEY = re.compile(r"^(.*mid_block\.attentions\.\d+\.)(to_q|to_k|to_v|to_out\.0)\.(weight|bias)$")
_LEGACY_KEY = re.compile(r"mid_block\.attentions\.\d+\.query\.")


def _legacy_name(key: str) -> str:
  m = _ATTENTION_KEY.match(key)
  return f"{m[1]}{_LEGACY_ATTENTION[m[2]]}.{m[3]}" if m else key


def vae_config(config: dict, source: str) -> VAEConfig:
  try:
    return VAEConfig.from_diffusers(config, source=source)
  except (TypeError, ValueError) as e:
    raise ConversionError(f"{source}: {e}" if source not in str(e) else str(e)) from e


def import_vae(folder: str | os.PathLike, *, dtype=None,
               param_dtype=jnp.float32) -> tuple[AutoencoderKL, dict]:
  """Reads a diffusers `vae/` folder; returns the filled module and the diffusers config dict.

  The module is built abstractly and filled tensor by tensor, so peak memory is
  about one copy of the weights.
  """
  config = read_json_config(folder, error=ConversionError)
  cfg = vae_config(config, str(Path(folder) / "config.json"))
  weights = find_weights_file(folder, DIFFUSERS_WEIGHTS, error=ConversionError)
  state_dict = open_state_dict(weights, error=ConversionError)
  module = nnx.eval_shape(lambda: AutoencoderKL(cfg, dtype=dtype, param_dtype=param_dtype,
                                                rngs=nnx.Rngs(0)))
  legacy = any(_LEGACY_KEY.search(k) for k in state_dict)
  load_into(module, state_dict, str(weights), rename=_legacy_name if legacy else None, error=ConversionError)
  return module, config


def export_vae(module: AutoencoderKL, config: dict | None, out_folder: str | os.PathLike) -> None:
  """Writes `config.json` + `diffusion_pytorch_model.safetensors` loadable by `AutoencoderKL.from_pretrained`.

  `config` is the diffusers config the module came from (its extra fields, e.g.
  `sample_size`, are kept); None writes one from the module's own config.
  """
  out_folder = Path(out_folder)
  out = dict(config or {})
  out.pop("_use_default_values", None)
  out.update(module.config.to_diffusers())
  out.setdefault("_diffusers_version", _diffusers_version())
  save_safetensors(export_state_dict(module), out_folder / WEIGHTS_NAME)
  write_json_atomic(out_folder / "config.json", out)


def _diffusers_version() -> str:
  try:
    from importlib.metadata import version
    return version("diffusers")
  except Exception:  # diffusers is optional at export time
    return "0.42.1"
