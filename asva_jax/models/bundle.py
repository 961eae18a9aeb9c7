"""The models a sampling run needs, as one bundle (`Models`): whatever they were loaded from.

  unet              the video UNet (`AudioUNet3D`)
  autoencoder       `AutoencoderKL` or `SpaceToDepth`: encode -> (mean, logvar), decode
  audio_encoder     `ImageBindAudioEncoder`
  text_encodings    prompt -> (77, D) encoding, "" = the null text: a `PromptEncoder`, or a
                    mapping or callable that becomes one (with `encode_prompts`)
  spec              the run spec (`asva_jax.run_spec.RunSpec`): noise schedule, prediction type,
                    latent scaling, frame size, ... read from the folder, never guessed
  encode_prompts    optional: list of prompts -> (N, 77, D), for prompts without a stored encoding
  config, step      a training workdir's config and the step loaded (None otherwise)
  source            where they came from, named in errors

`asva_jax.pipeline.load_models` loads one from a converted checkpoint folder or a training
workdir; the built-in demo and the benchmarks build one in memory.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from asva_jax.models.prompts import PromptEncoder, UnknownCategoryError
from asva_jax.models.space_to_depth import SpaceToDepth


@dataclasses.dataclass
class Models:
  unet: Any
  autoencoder: Any
  audio_encoder: Any
  text_encodings: PromptEncoder | Mapping[str, np.ndarray] | Callable[[str], np.ndarray]
  spec: Any                       # asva_jax.run_spec.RunSpec
  encode_prompts: Callable[[list[str]], np.ndarray] | None = None
  config: Any = None              # a training workdir's config (training settings only)
  step: int | None = None
  source: str = "in-memory models"

  def __post_init__(self):
    if not isinstance(self.text_encodings, PromptEncoder):
      self.text_encodings = PromptEncoder(self.text_encodings, encode=self.encode_prompts,
                                          unknown=self._unknown_category)

  def _unknown_category(self, prompt: str) -> UnknownCategoryError:
    known = self.spec.class_prompts
    shown = ", ".join(repr(p) for p in known[:8]) + (" ..." if len(known) > 8 else "")
    return UnknownCategoryError(f"unknown category {prompt!r}: {self.source} has no encoding for it and "
                                f"no text encoder; its classes: {shown or 'none recorded'}")

  @property
  def scaling_factor(self) -> float:
    return self.spec.scaling_factor


def autoencoder_factor(autoencoder) -> int:
  """Spatial downsampling of a built autoencoder: `SpaceToDepth.factor`, or 2^(levels - 1) for a VAE."""
  if isinstance(autoencoder, SpaceToDepth):
    return int(autoencoder.factor)
  return 2 ** (len(autoencoder.config.block_out_channels) - 1)
