"""ImageBind's audio branch plus AVSyncD's final LayerNorm: the frozen audio encoder (docs/reference.md §4).

A normalised log-mel (B, 128, 204) becomes 1 + 12 x 19 tokens (CLS, then one per
16 x 16 patch with stride 10, mel-major), runs through a pre-norm transformer whose
attention appends a learned key/value, and is normalised by AVSyncD's `final_layer_norm`:
(B, 229, D) tokens that the UNet's audio cross-attention reads, per video frame through
`segment_masks`. ImageBind's head and postprocessor (CLS -> LayerNorm -> Linear ->
L2-normalise -> x20) give the joint-space embedding, unused by AVSyncD.

Attribute names are those of AVSyncD's `ImageBindSegmaskAudioEncoder` state dict
(`preprocessor.*`, `trunk.*`, `head.*`, `postprocessor.*`, `final_layer_norm.*`), with
the fused attention input projection stored as a Linear `in_proj` (kernel (D, 3D)).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from asva_jax import component_folders
from asva_jax.audio.segments import segment_masks
from asva_jax.models.imagebind_layers import (AudioPreprocessor, LogitScaling, Normalize, SelectToken,
                                              SimpleTransformer)
from asva_jax.models.linear import Linear
from asva_jax.models.normalization import LayerNorm

__all__ = ["ImageBindAudioConfig", "ImageBindAudioEncoder", "build_audio_encoder",
           "load_audio_encoder", "segment_masks"]

CLASS_NAME = "ImageBindSegmaskAudioEncoder"


@dataclasses.dataclass(frozen=True)
class ImageBindAudioConfig:
  """Dimensions of the audio branch (ImageBind-Huge by default) and AVSyncD's wrapper fields."""

  embed_dim: int = 768
  num_blocks: int = 12
  num_heads: int = 12
  out_embed_dim: int = 1024
  kernel_size: int = 16
  stride: int = 10
  num_mel_bins: int = 128
  target_len: int = 204
  n_segment: int = 12
  pretrained_model_name: str = "imagebind-huge"

  DIMENSIONS = ("embed_dim", "num_blocks", "num_heads", "out_embed_dim", "kernel_size", "stride",
                "num_mel_bins", "target_len")

  def __post_init__(self):
    if self.embed_dim % self.num_heads:
      raise ValueError(f"ImageBindAudioConfig: embed_dim {self.embed_dim} not divisible by "
                       f"num_heads {self.num_heads}")
    if min(self.grid) < 1:
      raise ValueError(f"ImageBindAudioConfig: a {self.kernel_size}-patch does not fit "
                       f"{self.num_mel_bins} x {self.target_len}")

  @property
  def grid(self) -> tuple[int, int]:
    """(rows, cols) of the patch grid: (12, 19) for 128 mel bins x 204 frames."""
    cells = lambda n: (n - self.kernel_size) // self.stride + 1
    return cells(self.num_mel_bins), cells(self.target_len)

  @property
  def num_tokens(self) -> int:
    rows, cols = self.grid
    return 1 + rows * cols

  @classmethod
  def from_dict(cls, config: Mapping, source: str = "config") -> ImageBindAudioConfig:
    """From a component config.json (unknown fields such as `_class_name` ignored)."""
    names = {f.name for f in dataclasses.fields(cls)}
    try:
      return cls(**{k: v for k, v in config.items() if k in names})
    except (TypeError, ValueError) as e:
      raise ValueError(f"{source}: {e}") from e

  def to_dict(self) -> dict:
    """The component config: AVSyncD's fields (`_class_name`, `n_segment`,
    `pretrained_model_name`) and the dimensions."""
    return {"_class_name": CLASS_NAME, **dataclasses.asdict(self)}


class ImageBindAudioEncoder(nnx.Module):
  """mel (B, 128, 204) or (B, 1, 128, 204) -> tokens (B, 229, D) after the final LayerNorm."""

  def __init__(self, config: ImageBindAudioConfig | None = None, *, attention: str = "auto",
               dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    config = config or ImageBindAudioConfig()
    d = config.embed_dim
    kw = dict(dtype=dtype, param_dtype=param_dtype)
    self.config = config
    self.dtype = dtype
    self.preprocessor = AudioPreprocessor(d, config.kernel_size, config.stride, config.num_tokens,
                                          rngs=rngs, **kw)
    self.trunk = SimpleTransformer(d, config.num_blocks, config.num_heads, attention=attention,
                                   rngs=rngs, **kw)
    self.head = nnx.List([LayerNorm(d, eps=1e-6, **kw), SelectToken(0),
                          Linear(d, config.out_embed_dim, use_bias=False, rngs=rngs, **kw)])
    self.postprocessor = nnx.List([Normalize(), LogitScaling()])
    self.final_layer_norm = LayerNorm(d, eps=1e-6, **kw)

  def _mel_image(self, mel: jax.Array) -> jax.Array:
    mel = jnp.asarray(mel)
    if mel.ndim == 4 and mel.shape[1] == 1:
      mel = mel[:, 0]
    expected = (self.config.num_mel_bins, self.config.target_len)
    if mel.ndim != 3 or mel.shape[1:] != expected:
      raise ValueError(f"ImageBindAudioEncoder: expected mel (B, {expected[0]}, {expected[1]}) or "
                       f"(B, 1, {expected[0]}, {expected[1]}), got shape {mel.shape}")
    return mel.astype(self.dtype or jnp.float32)[..., None]

  def trunk_output(self, mel: jax.Array) -> jax.Array:
    """ImageBind's trunk output (B, 229, D): no final norm."""
    return self.trunk(self.preprocessor(self._mel_image(mel)))

  def __call__(self, mel: jax.Array) -> jax.Array:
    return self.final_layer_norm(self.trunk_output(mel))

  def head_output(self, mel: jax.Array) -> jax.Array:
    """The head's output (B, out_embed_dim) before the postprocessor."""
    x = self.trunk_output(mel)
    for layer in self.head:
      x = layer(x)
    return x

  def embed(self, mel: jax.Array, normalize: bool = True) -> jax.Array:
    """ImageBind's audio embedding: the head output, L2-normalised and scaled when `normalize`."""
    x = self.head_output(mel)
    if normalize:
      for layer in self.postprocessor:
        x = layer(x)
    return x

  def null_tokens(self, batch: int = 1) -> jax.Array:
    """Tokens of the null audio: the encoder applied to an all-zero mel (docs/reference.md §4.7)."""
    zeros = jnp.zeros((1, self.config.num_mel_bins, self.config.target_len), self.dtype or jnp.float32)
    tokens = self(zeros)
    return jnp.broadcast_to(tokens, (batch,) + tokens.shape[1:])

  def segment_masks(self) -> np.ndarray:
    """(n_segment, 229) boolean masks, True = frame may attend (docs/reference.md §4.6)."""
    return segment_masks(self.config.n_segment, self.config.grid)


def build_audio_encoder(config: ImageBindAudioConfig | Mapping | None = None, *, abstract: bool = False,
                        seed: int = 0, **options) -> ImageBindAudioEncoder:
  """A randomly initialised encoder, or its abstract shape (`nnx.eval_shape`) to load into."""
  if config is None or isinstance(config, Mapping):
    config = ImageBindAudioConfig.from_dict(config or {})
  make = lambda: ImageBindAudioEncoder(config, rngs=nnx.Rngs(seed), **options)
  return nnx.eval_shape(make) if abstract else make()


def load_audio_encoder(path: str | os.PathLike, *, dtype=None, param_dtype=jnp.float32,
                       attention: str = "auto") -> ImageBindAudioEncoder:
  """Loads a converted audio encoder from a checkpoint root (`path/audio_encoder/`) or that folder."""
  return component_folders.load_component(path, "audio_encoder", lambda config, source: ImageBindAudioEncoder(
      ImageBindAudioConfig.from_dict(config, source=source), attention=attention, dtype=dtype,
      param_dtype=param_dtype, rngs=nnx.Rngs(0)))
