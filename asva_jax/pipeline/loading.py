"""`load_models`: the one loader of a sampling bundle (`asva_jax.models.bundle.Models`), from a
converted checkpoint folder or a training workdir, with the same call."""

from __future__ import annotations

import os

import jax.numpy as jnp

from asva_jax import run_folder, run_spec
from asva_jax.component_folders import CheckpointError
from asva_jax.models.bundle import Models
from asva_jax.constants import NULL_PROMPT
from asva_jax.models.prompts import clip_encoder, has_clip_encoder
from asva_jax.storage import as_path


def load_models(path: str | os.PathLike, step: int | None = None, *, dtype=jnp.float32,
                raw_weights: bool = False) -> Models:
  """The bundle of a converted checkpoint folder, or of a training workdir (its latest step
  unless `step`; its EMA weights when it has them, unless `raw_weights`). `dtype` is the compute
  dtype of the UNet and the autoencoder."""
  path = as_path(path)  # local or gs://
  if not path.is_dir():
    raise CheckpointError(f"{path}: no such checkpoint folder or training workdir")
  if run_folder.is_workdir(path):
    from asva_jax.training.trained import load_trained
    return load_trained(path, step, dtype=dtype, raw_weights=raw_weights)
  if step is not None:
    raise CheckpointError(f"{path}: a converted checkpoint folder has no steps (step={step} given)")
  return from_checkpoint(path, dtype=dtype)


def from_checkpoint(path: str | os.PathLike, *, dtype=jnp.float32) -> Models:
  """A converted checkpoint folder (`convert.from_pytorch`): unet/, vae/, audio_encoder/, and
  text_encodings/ and/or text_encoder/ + tokenizer/, and its run spec (`run_spec.read_checkpoint_spec`)."""
  from asva_jax.models.imagebind_audio import load_audio_encoder
  from asva_jax.models.unet_3d import load_unet
  from asva_jax.models.vae import load_vae
  from asva_jax.text_encodings import load_text_encodings
  path = as_path(path)  # local or gs://
  missing = [c for c in ("unet", "vae", "audio_encoder") if not (path / c / "config.json").is_file()]
  if missing:
    raise CheckpointError(f"{path}: not a sampling checkpoint: missing {', '.join(m + '/' for m in missing)} "
                          "(convert one with python -m convert.from_pytorch)")
  try:
    unet = load_unet(path, dtype=dtype)
    vae = load_vae(path, dtype=dtype)
    audio_encoder = load_audio_encoder(path, dtype=jnp.float32)  # fp32, as the original samples
  except CheckpointError:
    raise
  except (ValueError, OSError) as e:
    raise CheckpointError(f"{path}: cannot load the checkpoint ({e})") from e
  encodings = load_text_encodings(path) if (path / "text_encodings").is_dir() else {}
  encode = clip_encoder(path) if has_clip_encoder(path) else None
  if NULL_PROMPT not in encodings and encode is None:
    raise CheckpointError(f"{path}: no null (empty-prompt) text encoding and no text encoder to compute it")
  return Models(unet=unet, autoencoder=vae, audio_encoder=audio_encoder, text_encodings=encodings,
                spec=run_spec.read_checkpoint_spec(path), encode_prompts=encode, source=str(path))


def frame_size(models: Models) -> tuple[int, int]:
  """(H, W) the model was trained at: its run spec's."""
  return tuple(models.spec.frame_size)

