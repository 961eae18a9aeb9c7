"""The models a sampling run needs, as one bundle, from a checkpoint folder or a training workdir.

`Models` (both loaders return one; the built-in demo and the benchmarks build one in memory):

  unet              the video UNet (`AudioUNet3D`)
  autoencoder       `AutoencoderKL` or `SpaceToDepth`: encode -> (mean, logvar), decode
  audio_encoder     `ImageBindAudioEncoder`
  text_encodings    prompt -> (77, D) encoding, "" = the null text (a mapping or a callable)
  spec              the run spec (`asva_jax.run_spec.RunSpec`): noise schedule, prediction type,
                    latent scaling, frame size, ... read from the folder, never guessed
  encode_prompts    optional: list of prompts -> (N, 77, D), for prompts without a stored encoding
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np

from asva_jax import run_spec
from asva_jax.component_folders import CheckpointError
from asva_jax.constants import NULL_PROMPT
from asva_jax.errors import AsvaError
from asva_jax.storage import as_path


class UnknownCategoryError(AsvaError, KeyError):
  """A prompt with no stored encoding, and no text encoder to compute one."""

  def __str__(self) -> str:
    return str(self.args[0])


@dataclasses.dataclass
class Models:
  unet: Any
  autoencoder: Any
  audio_encoder: Any
  text_encodings: Mapping[str, np.ndarray] | Callable[[str], np.ndarray]
  spec: run_spec.RunSpec
  encode_prompts: Callable[[list[str]], np.ndarray] | None = None
  config: Any = None              # a training workdir's config (training settings only)
  step: int | None = None
  source: str = "in-memory models"

  @property
  def scaling_factor(self) -> float:
    return self.spec.scaling_factor


def load_models(path: str | os.PathLike, step: int | None = None, *, dtype=jnp.float32) -> Models:
  """The bundle of a converted checkpoint folder, or of a training workdir (its latest step
  unless `step`). `dtype` is the compute dtype of the UNet and the autoencoder."""
  path = as_path(path)  # local or gs://
  if not path.is_dir():
    raise CheckpointError(f"{path}: no such checkpoint folder or training workdir")
  from asva_jax import workdir
  if workdir.is_workdir(path):
    return workdir.load_models(path, step, dtype=dtype)
  if step is not None:
    raise CheckpointError(f"{path}: a converted checkpoint folder has no steps (step={step} given)")
  return from_checkpoint(path, dtype=dtype)


def from_checkpoint(path: str | os.PathLike, *, dtype=jnp.float32) -> Models:
  """A converted checkpoint folder (`convert.from_pytorch`): unet/, vae/, audio_encoder/, and
  text_encodings/ and/or text_encoder/ + tokenizer/, and its run spec (`run_spec.read_checkpoint_spec`)."""
  import asva_jax
  path = as_path(path)  # local or gs://
  missing = [c for c in ("unet", "vae", "audio_encoder") if not (path / c / "config.json").is_file()]
  if missing:
    raise CheckpointError(f"{path}: not a sampling checkpoint: missing {', '.join(m + '/' for m in missing)} "
                          "(convert one with python -m convert.from_pytorch)")
  try:
    unet = asva_jax.load_unet(path, dtype=dtype)
    vae = asva_jax.load_vae(path, dtype=dtype)
    audio_encoder = asva_jax.load_audio_encoder(path, dtype=jnp.float32)  # fp32, as the original samples
  except CheckpointError:
    raise
  except (ValueError, OSError) as e:
    raise CheckpointError(f"{path}: cannot load the checkpoint ({e})") from e
  encodings = asva_jax.load_text_encodings(path) if (path / "text_encodings").is_dir() else {}
  encode = None
  if (path / "text_encoder").is_dir() and (path / "tokenizer").is_dir():
    encode = _lazy_text_encoder(path)
  if NULL_PROMPT not in encodings and encode is None:
    raise CheckpointError(f"{path}: no null (empty-prompt) text encoding and no text encoder to compute it")
  return Models(unet=unet, autoencoder=vae, audio_encoder=audio_encoder, text_encodings=encodings,
                spec=run_spec.read_checkpoint_spec(path), encode_prompts=encode, source=str(path))


def _lazy_text_encoder(path: Path) -> Callable[[list[str]], np.ndarray]:
  """CLIP runs only for prompts without a stored encoding; loaded on first use."""
  loaded: dict = {}

  def encode(prompts: list[str]) -> np.ndarray:
    import asva_jax
    from asva_jax.models.clip_tokenizer import encode_prompts
    if not loaded:
      loaded["model"] = asva_jax.load_text_encoder(path)
      loaded["tokenizer"] = asva_jax.load_tokenizer(path)
    return encode_prompts(loaded["model"], loaded["tokenizer"], prompts)

  return encode


def frame_size(models: Models) -> tuple[int, int]:
  """(H, W) the model was trained at: its run spec's."""
  return tuple(models.spec.frame_size)


def text_encoding(models, prompt: str) -> np.ndarray:
  """(77, D) float32 for `prompt`: the stored class encoding, else the text encoder's."""
  stored = models.text_encodings
  if isinstance(stored, Mapping):
    if prompt in stored:
      return np.asarray(stored[prompt], np.float32)
  elif callable(stored):
    try:
      return np.asarray(stored(prompt), np.float32)
    except KeyError:
      pass
  if models.encode_prompts is not None:
    return np.asarray(models.encode_prompts([prompt])[0], np.float32)
  known = models.spec.class_prompts
  shown = ", ".join(repr(p) for p in known[:8]) + (" ..." if len(known) > 8 else "")
  raise UnknownCategoryError(f"unknown category {prompt!r}: {models.source} has no encoding for it and "
                             f"no text encoder; its classes: {shown or 'none recorded'}")
