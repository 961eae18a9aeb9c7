"""ImageBind's vision, text and audio towers: the "CLIP" similarity model of the evaluation.

The original's evaluation wrapper (`CLIPModel` in avgen/evaluations/models/clip.py) is
ImageBind-Huge, not OpenAI CLIP (docs/reference.md §9.2). Each tower is preprocessor -> trunk ->
head -> postprocessor, under the names of ImageBind's checkpoint
(`modality_{preprocessors,trunks,heads,postprocessors}.{vision,text,audio}.*`):

  vision  image repeated to 2 frames -> bias-free Conv3d (2, 14, 14) patches, CLS, position
          embedding -> LayerNorm -> blocks -> LayerNorm, CLS, Linear -> L2-normalise
  text    token + position embedding -> causally masked blocks -> the end token (largest
          id) -> LayerNorm, Linear -> L2-normalise, x exp(log_logit_scale)
  audio   AVSyncD's audio branch (docs/reference.md §4; the same layers as `asva_jax.models.imagebind_audio`)
          -> L2-normalise, x 20

`encode_image`, `encode_text` and `encode_audio` return unit vectors as the wrapper
does (it divides the text and audio logit scales back out).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from asva_jax.eval.errors import EvalModelError
from asva_jax.eval.bpe_tokenizer import VOCAB_FILE, BPETokenizer, TokenizerError
from asva_jax.models.imagebind_layers import (AudioPreprocessor, Buffer, LogitScaling, Normalize,
                                              PosEmbedding, SelectToken, SimpleTransformer)
from asva_jax.models.linear import Linear, torch_uniform
from asva_jax.models.normalization import LayerNorm
from asva_jax.torch_weights import load_into, open_state_dict

MODALITIES = ("vision", "text", "audio")


@dataclasses.dataclass(frozen=True)
class ImageBindConfig:
  """ImageBind-Huge by default; field names are those of ImageBind's `ImageBindModel`."""

  out_embed_dim: int = 1024
  vision_embed_dim: int = 1280
  vision_num_blocks: int = 32
  vision_num_heads: int = 16
  text_embed_dim: int = 1024
  text_num_blocks: int = 24
  text_num_heads: int = 16
  audio_embed_dim: int = 768
  audio_num_blocks: int = 12
  audio_num_heads: int = 12
  video_frames: int = 2
  kernel_size: tuple[int, int, int] = (2, 14, 14)
  audio_kernel_size: int = 16
  audio_stride: int = 10
  audio_num_mel_bins: int = 128
  audio_target_len: int = 204
  image_size: int = 224
  vocab_size: int = 49408
  context_length: int = 77
  mlp_ratio: int = 4

  def __post_init__(self):
    object.__setattr__(self, "kernel_size", tuple(int(k) for k in self.kernel_size))
    for tower in MODALITIES:
      dim, heads = getattr(self, f"{tower}_embed_dim"), getattr(self, f"{tower}_num_heads")
      if dim % heads:
        raise ValueError(f"ImageBindConfig: {tower}_embed_dim {dim} does not split into "
                         f"{tower}_num_heads {heads} heads")

  @property
  def vision_grid(self) -> tuple[int, int, int]:
    t, h, w = self.kernel_size
    return self.video_frames // t, self.image_size // h, self.image_size // w

  @property
  def audio_grid(self) -> tuple[int, int]:
    cells = lambda n: (n - self.audio_kernel_size) // self.audio_stride + 1
    return cells(self.audio_num_mel_bins), cells(self.audio_target_len)

  @classmethod
  def field_names(cls) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


class PadIm2Video(nnx.Module):
  """An image (B, H, W, C) as a video of `ntimes` identical frames (B, T, H, W, C)."""

  def __init__(self, ntimes: int):
    self.ntimes = ntimes

  def __call__(self, x: jax.Array) -> jax.Array:
    return jnp.repeat(x[:, None], self.ntimes, axis=1)


class PatchConv3d(nnx.Module):
  """Bias-free Conv3d whose stride is its kernel: non-overlapping (t, h, w) patches."""

  def __init__(self, in_channels: int, out_channels: int, kernel_size: tuple[int, int, int], *,
               dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    self.kernel = nnx.Param(torch_uniform(in_channels * int(np.prod(kernel_size)))(
        rngs.params(), tuple(kernel_size) + (in_channels, out_channels), param_dtype))
    self.dtype = dtype

  def __call__(self, x: jax.Array) -> jax.Array:
    dtype = self.dtype or x.dtype
    kernel = self.kernel[...]
    return jax.lax.conv_general_dilated(
        x.astype(dtype), kernel.astype(dtype), window_strides=kernel.shape[:3], padding="VALID",
        dimension_numbers=("NDHWC", "DHWIO", "NDHWC"))


class PatchEmbed(nnx.Module):
  """`rgbt_stem`: `proj` = [PadIm2Video, Conv3d]; tokens in (t, h, w) order."""

  def __init__(self, embed_dim: int, kernel_size, ntimes: int, *, dtype=None, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    self.proj = nnx.List([PadIm2Video(ntimes), PatchConv3d(3, embed_dim, kernel_size, dtype=dtype,
                                                           param_dtype=param_dtype, rngs=rngs)])

  def __call__(self, image: jax.Array) -> jax.Array:
    x = self.proj[1](self.proj[0](image))
    return x.reshape(x.shape[0], -1, x.shape[-1])


class VisionPreprocessor(nnx.Module):
  """Image -> CLS + patch tokens + position embedding."""

  def __init__(self, config: ImageBindConfig, *, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    d = config.vision_embed_dim
    self.cls_token = nnx.Param(jnp.zeros((1, 1, d), param_dtype))
    self.rgbt_stem = PatchEmbed(d, config.kernel_size, config.video_frames, dtype=dtype,
                                param_dtype=param_dtype, rngs=rngs)
    self.pos_embedding_helper = PosEmbedding(1 + int(np.prod(config.vision_grid)), d,
                                             param_dtype=param_dtype, rngs=rngs)

  def __call__(self, image: jax.Array) -> jax.Array:
    patches = self.rgbt_stem(image)
    cls = jnp.broadcast_to(self.cls_token[...], (patches.shape[0], 1, patches.shape[-1]))
    tokens = jnp.concatenate([cls.astype(patches.dtype), patches], axis=1)
    return tokens + self.pos_embedding_helper.pos_embed[...].astype(patches.dtype)


class Embedding(nnx.Module):
  """`torch.nn.Embedding`: a (num, dim) table named `weight`."""

  def __init__(self, num: int, dim: int, *, param_dtype=jnp.float32, rngs: nnx.Rngs):
    self.weight = nnx.Param(0.02 * jax.random.normal(rngs.params(), (num, dim), param_dtype))

  def __call__(self, ids: jax.Array) -> jax.Array:
    return jnp.take(self.weight[...], ids, axis=0)


class TextPreprocessor(nnx.Module):
  """Token ids -> token + position embeddings; `mask` is the additive causal mask (0 / -inf)."""

  def __init__(self, config: ImageBindConfig, *, param_dtype=jnp.float32, rngs: nnx.Rngs):
    d, n = config.text_embed_dim, config.context_length
    self.token_embedding = Embedding(config.vocab_size, d, param_dtype=param_dtype, rngs=rngs)
    self.pos_embed = nnx.Param(0.01 * jax.random.normal(rngs.params(), (1, n, d), param_dtype))
    self.mask = Buffer(jnp.triu(jnp.full((n, n), -jnp.inf, jnp.float32), 1))

  def __call__(self, ids: jax.Array) -> tuple[jax.Array, jax.Array]:
    """-> tokens (B, L, D) and the boolean attention mask (L, L), True = may attend."""
    return self.token_embedding(ids) + self.pos_embed[...], jnp.isfinite(self.mask[...])


class SelectEOSAndProject(nnx.Module):
  """Text head: the token at each row's largest id (the end token), then `proj` = [LayerNorm, Linear]."""

  def __init__(self, dim: int, out_dim: int, *, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype)
    self.proj = nnx.List([LayerNorm(dim, eps=1e-6, **kw),
                          Linear(dim, out_dim, use_bias=False, rngs=rngs, **kw)])

  def __call__(self, x: jax.Array, ids: jax.Array) -> jax.Array:
    x = jnp.take_along_axis(x, jnp.argmax(ids, axis=-1)[:, None, None], axis=1)[:, 0]
    return self.proj[1](self.proj[0](x))


def _token_head(dim: int, out_dim: int, **kw) -> nnx.List:
  rngs = kw.pop("rngs")
  return nnx.List([LayerNorm(dim, eps=1e-6, **kw), SelectToken(0),
                   Linear(dim, out_dim, use_bias=False, rngs=rngs, **kw)])


class ImageBind(nnx.Module):
  """The vision, text and audio towers of ImageBind (eval mode: no DropPath)."""

  def __init__(self, config: ImageBindConfig | None = None, *, attention: str = "auto", dtype=None,
               param_dtype=jnp.float32, vocab_path: str | None = None, rngs: nnx.Rngs):
    c = config or ImageBindConfig()
    kw = dict(dtype=dtype, param_dtype=param_dtype)
    trunk = lambda tower, **extra: SimpleTransformer(
        getattr(c, f"{tower}_embed_dim"), getattr(c, f"{tower}_num_blocks"),
        getattr(c, f"{tower}_num_heads"), mlp_ratio=c.mlp_ratio, attention=attention, rngs=rngs,
        **extra, **kw)
    rows, cols = c.audio_grid
    self.config = c
    self.vocab_path = vocab_path
    self.modality_preprocessors = nnx.Dict(
        vision=VisionPreprocessor(c, rngs=rngs, **kw),
        text=TextPreprocessor(c, param_dtype=param_dtype, rngs=rngs),
        audio=AudioPreprocessor(c.audio_embed_dim, c.audio_kernel_size, c.audio_stride,
                                1 + rows * cols, rngs=rngs, **kw))
    self.modality_trunks = nnx.Dict(
        vision=trunk("vision", add_bias_kv=False, pre_transformer_ln=True),
        text=trunk("text", add_bias_kv=False),
        audio=trunk("audio", add_bias_kv=True))
    self.modality_heads = nnx.Dict(
        vision=_token_head(c.vision_embed_dim, c.out_embed_dim, rngs=rngs, **kw),
        text=SelectEOSAndProject(c.text_embed_dim, c.out_embed_dim, rngs=rngs, **kw),
        audio=_token_head(c.audio_embed_dim, c.out_embed_dim, rngs=rngs, **kw))
    self.modality_postprocessors = nnx.Dict(
        vision=nnx.List([Normalize()]),
        text=nnx.List([Normalize(), LogitScaling(1 / 0.07)]),
        audio=nnx.List([Normalize(), LogitScaling(20.0)]))

  # --- trunks (B, tokens, width) ---------------------------------------------------------

  def _check(self, x: jax.Array, shape: tuple, what: str) -> None:
    if tuple(x.shape[1:]) != tuple(shape):
      raise ValueError(f"ImageBind.{what}: expected (B, {', '.join(map(str, shape))}), got {tuple(x.shape)}")

  def vision_trunk(self, image: jax.Array) -> jax.Array:
    s = self.config.image_size
    self._check(image, (s, s, 3), "encode_image")
    return self.modality_trunks["vision"](self.modality_preprocessors["vision"](image))

  def text_trunk(self, ids: jax.Array) -> jax.Array:
    self._check(ids, (self.config.context_length,), "encode_text")
    tokens, mask = self.modality_preprocessors["text"](ids)
    return self.modality_trunks["text"](tokens, mask)

  def audio_trunk(self, mel: jax.Array) -> jax.Array:
    if mel.ndim == 4 and mel.shape[1] == 1:
      mel = mel[:, 0]
    self._check(mel, (self.config.audio_num_mel_bins, self.config.audio_target_len), "encode_audio")
    return self.modality_trunks["audio"](self.modality_preprocessors["audio"](mel[..., None]))

  # --- heads (B, out_embed_dim), before the postprocessors -------------------------------

  def _apply(self, layers, x):
    for layer in layers:
      x = layer(x)
    return x

  def vision_head(self, image: jax.Array) -> jax.Array:
    return self._apply(self.modality_heads["vision"], self.vision_trunk(image))

  def text_head(self, ids: jax.Array) -> jax.Array:
    return self.modality_heads["text"](self.text_trunk(ids), ids)

  def audio_head(self, mel: jax.Array) -> jax.Array:
    return self._apply(self.modality_heads["audio"], self.audio_trunk(mel))

  # --- what ImageBind returns, and the evaluation wrapper's unit vectors -----------------

  def embed(self, modality: str, x: jax.Array) -> jax.Array:
    """ImageBind's output for one modality: the head output through its postprocessor."""
    head = {"vision": self.vision_head, "text": self.text_head, "audio": self.audio_head}[modality]
    return self._apply(self.modality_postprocessors[modality], head(x))

  def _unscaled(self, modality: str, x: jax.Array) -> jax.Array:
    scaling = self.modality_postprocessors[modality][1]
    return self.embed(modality, x) / jnp.minimum(jnp.exp(scaling.log_logit_scale[...]), scaling.max_scale)

  def encode_image(self, image: jax.Array) -> jax.Array:
    """(B, 224, 224, 3) CLIP-normalised -> (B, out_embed_dim) unit vectors."""
    return self.embed("vision", image)

  def encode_text(self, ids: jax.Array) -> jax.Array:
    """(B, 77) int token ids (`tokenize`) -> (B, out_embed_dim) unit vectors."""
    return self._unscaled("text", ids)

  def encode_audio(self, mel: jax.Array) -> jax.Array:
    """(B, 128, 204) (or (B, 1, 128, 204)) normalised log-mel -> (B, out_embed_dim) unit vectors."""
    return self._unscaled("audio", mel)

  def tokenize(self, texts: str | Sequence[str]) -> np.ndarray:
    """Texts -> (B, 77) int32 ids with ImageBind's BPE vocabulary (`vocab_path`)."""
    if self.vocab_path is None:
      raise TokenizerError(f"ImageBind.tokenize: no BPE vocabulary given; pass vocab_path= to "
                           f"load_imagebind (ImageBind's {VOCAB_FILE})")
    return load_tokenizer(self.vocab_path, self.config.context_length)(texts)


@functools.lru_cache(maxsize=4)
def load_tokenizer(vocab_path: str, context_length: int = 77) -> BPETokenizer:
  return BPETokenizer(vocab_path, context_length)


# --- loading the original checkpoint --------------------------------------------------

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
_TOWER_PREFIXES = tuple(f"modality_{part}.{m}." for part in ("preprocessors", "trunks", "heads",
                                                              "postprocessors") for m in MODALITIES)


def _torch_name(key: str) -> str:
  """Our NNX-derived key -> ImageBind's (`attn.in_proj.weight` -> `attn.in_proj_weight`)."""
  return key.replace(".attn.in_proj.weight", ".attn.in_proj_weight").replace(
      ".attn.in_proj.bias", ".attn.in_proj_bias")


def _inferred_dims(sd, source: str) -> dict:
  """Widths, depths and the output size read off the tensors' shapes."""
  def shape(key):
    if key not in sd:
      raise EvalModelError(f"{source}: missing tensor {key} (not an ImageBind checkpoint?)")
    return sd.shape(key)
  dims = {"out_embed_dim": shape("modality_heads.vision.2.weight")[0],
          "vision_embed_dim": shape("modality_preprocessors.vision.cls_token")[-1],
          "text_embed_dim": shape("modality_preprocessors.text.pos_embed")[-1],
          "audio_embed_dim": shape("modality_preprocessors.audio.cls_token")[-1],
          "vocab_size": shape("modality_preprocessors.text.token_embedding.weight")[0],
          "context_length": shape("modality_preprocessors.text.pos_embed")[1]}
  for tower in MODALITIES:
    prefix = f"modality_trunks.{tower}.blocks."
    dims[f"{tower}_num_blocks"] = len({k[len(prefix):].split(".", 1)[0] for k in sd if k.startswith(prefix)})
  return dims


def _config(inferred: dict, dims: dict, source: str) -> ImageBindConfig:
  unknown = sorted(set(dims) - set(ImageBindConfig.field_names()))
  if unknown:
    raise EvalModelError(f"load_imagebind: unknown dimension(s) {', '.join(unknown)} (known: "
                          f"{', '.join(ImageBindConfig.field_names())})")
  default = ImageBindConfig()
  merged = {**inferred, **dims}
  for tower in MODALITIES:
    heads, width = f"{tower}_num_heads", merged[f"{tower}_embed_dim"]
    if heads not in merged:
      # Heads cannot be read off the shapes: Huge's count at Huge's width, else 64-channel heads.
      merged[heads] = getattr(default, heads) if width == getattr(default, f"{tower}_embed_dim") \
          else max(1, width // 64)
  try:
    return ImageBindConfig(**merged)
  except (TypeError, ValueError) as e:
    raise EvalModelError(f"{source}: {e}") from e


def weights_file(path: str | os.PathLike) -> Path:
  """`path` itself, or the single ImageBind weights file in the folder `path`."""
  path = Path(path)
  if path.is_file():
    return path
  if path.is_dir():
    found = sorted(p for p in path.iterdir() if p.suffix in WEIGHT_SUFFIXES)
    if len(found) == 1:
      return found[0]
    raise EvalModelError(f"{path}: expected one ImageBind weights file ({', '.join(WEIGHT_SUFFIXES)}) "
                          f"in the folder, found {len(found)}")
  raise EvalModelError(f"{path}: no such ImageBind weights file (imagebind_huge.pth)")


def load_imagebind(path: str | os.PathLike, *, vocab_path: str | os.PathLike | None = None,
                   attention: str = "auto", dtype=None, **dims) -> ImageBind:
  """ImageBind's vision, text and audio towers from its checkpoint (`imagebind_huge.pth`, or
  the same keys in .safetensors); other modalities' tensors are ignored.

  Widths, depths, output size, vocabulary and context are read off the tensors; `dims`
  (ImageBindConfig / `ImageBindModel` field names, e.g. `vision_num_heads=4`) override
  them and give what the shapes cannot (head counts; default: ImageBind-Huge's).
  `vocab_path`: ImageBind's `bpe_simple_vocab_16e6.txt.gz` for `tokenize` (default: that
  file beside the weights, if present).
  """
  file = weights_file(path)
  sd = open_state_dict(file, what="ImageBind", error=EvalModelError)
  config = _config(_inferred_dims(sd, str(file)), dims, str(file))
  if vocab_path is None and (file.parent / VOCAB_FILE).is_file():
    vocab_path = file.parent / VOCAB_FILE
  abstract = nnx.eval_shape(lambda: ImageBind(
      config, attention=attention, dtype=dtype, vocab_path=None if vocab_path is None else str(vocab_path),
      rngs=nnx.Rngs(0)))
  return load_into(abstract, sd, str(file), rename=_torch_name, kind=nnx.Variable,
                   ignore=lambda k: not k.startswith(_TOWER_PREFIXES), error=EvalModelError)
