"""The CLIP text tower (transformers `CLIPTextModel`) in Flax NNX: SD1.5's text encoder.

Token and position embeddings, pre-norm causal self-attention blocks with a
quick-GELU MLP, a final LayerNorm; the output is the last hidden state, which is
what Stable Diffusion (and AVSyncD) feed to cross-attention. Attribute names are
those transformers 5.x saves (no `text_model.` prefix), with `nnx.Embed`'s
`embedding` standing for PyTorch's `weight`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import jax
import jax.numpy as jnp
from flax import nnx

from asva_jax import component_folders
from asva_jax.models.normalization import LayerNorm


def quick_gelu(x: jax.Array) -> jax.Array:
  return x * jax.nn.sigmoid(1.702 * x)


ACTIVATIONS = {
    "quick_gelu": quick_gelu,
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
}


@dataclasses.dataclass(frozen=True)
class CLIPTextConfig:
  """The fields of a transformers `CLIPTextConfig` that shape the network (SD1.5 values by default)."""

  vocab_size: int = 49408
  hidden_size: int = 768
  intermediate_size: int = 3072
  num_hidden_layers: int = 12
  num_attention_heads: int = 12
  max_position_embeddings: int = 77
  layer_norm_eps: float = 1e-5
  hidden_act: str = "quick_gelu"

  @classmethod
  def from_transformers(cls, config: Mapping, source: str = "config") -> CLIPTextConfig:
    """Reads a `CLIPTextModel` config.json (or a full `CLIPModel` one, via its `text_config`)."""
    if "text_config" in config and "hidden_size" not in config:
      config = config["text_config"]
    names = {f.name for f in dataclasses.fields(cls)}
    cfg = cls(**{k: v for k, v in config.items() if k in names})
    if cfg.hidden_act not in ACTIVATIONS:
      raise ValueError(f"{source}: hidden_act {cfg.hidden_act!r} unsupported ({', '.join(ACTIVATIONS)})")
    if cfg.hidden_size % cfg.num_attention_heads:
      raise ValueError(f"{source}: hidden_size {cfg.hidden_size} not divisible by "
                       f"num_attention_heads {cfg.num_attention_heads}")
    return cfg

  def to_transformers(self) -> dict:
    return dict(dataclasses.asdict(self), model_type="clip_text_model", architectures=["CLIPTextModel"])


class CLIPTextEmbeddings(nnx.Module):
  def __init__(self, cfg: CLIPTextConfig, *, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.token_embedding = nnx.Embed(cfg.vocab_size, cfg.hidden_size, **kw)
    self.position_embedding = nnx.Embed(cfg.max_position_embeddings, cfg.hidden_size, **kw)

  def __call__(self, input_ids: jax.Array) -> jax.Array:
    positions = jnp.arange(input_ids.shape[-1])
    return self.token_embedding(input_ids) + self.position_embedding(positions)


class CLIPAttention(nnx.Module):
  def __init__(self, cfg: CLIPTextConfig, *, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    d = cfg.hidden_size
    self.num_heads = cfg.num_attention_heads
    self.k_proj = nnx.Linear(d, d, **kw)
    self.v_proj = nnx.Linear(d, d, **kw)
    self.q_proj = nnx.Linear(d, d, **kw)
    self.out_proj = nnx.Linear(d, d, **kw)

  def __call__(self, x: jax.Array) -> jax.Array:
    b, t, d = x.shape
    heads = lambda y: y.reshape(b, t, self.num_heads, d // self.num_heads)
    out = jax.nn.dot_product_attention(heads(self.q_proj(x)), heads(self.k_proj(x)), heads(self.v_proj(x)),
                                       is_causal=True)
    return self.out_proj(out.reshape(b, t, d))


class CLIPMLP(nnx.Module):
  def __init__(self, cfg: CLIPTextConfig, *, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.activation = cfg.hidden_act
    self.fc1 = nnx.Linear(cfg.hidden_size, cfg.intermediate_size, **kw)
    self.fc2 = nnx.Linear(cfg.intermediate_size, cfg.hidden_size, **kw)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.fc2(ACTIVATIONS[self.activation](self.fc1(x)))


class CLIPEncoderLayer(nnx.Module):
  def __init__(self, cfg: CLIPTextConfig, *, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype)
    self.self_attn = CLIPAttention(cfg, rngs=rngs, **kw)
    self.layer_norm1 = LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps, **kw)
    self.mlp = CLIPMLP(cfg, rngs=rngs, **kw)
    self.layer_norm2 = LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps, **kw)

  def __call__(self, x: jax.Array) -> jax.Array:
    x = x + self.self_attn(self.layer_norm1(x))
    return x + self.mlp(self.layer_norm2(x))


class CLIPEncoder(nnx.Module):
  def __init__(self, cfg: CLIPTextConfig, *, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    self.layers = nnx.List([CLIPEncoderLayer(cfg, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
                            for _ in range(cfg.num_hidden_layers)])

  def __call__(self, x: jax.Array) -> jax.Array:
    for layer in self.layers:
      x = layer(x)
    return x


class CLIPTextModel(nnx.Module):
  """input_ids (B, L) int, L <= max_position_embeddings -> last hidden state (B, L, hidden_size)."""

  def __init__(self, config: CLIPTextConfig = CLIPTextConfig(), *, dtype=None, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    self.config = config
    kw = dict(dtype=dtype, param_dtype=param_dtype)
    self.embeddings = CLIPTextEmbeddings(config, rngs=rngs, **kw)
    self.encoder = CLIPEncoder(config, rngs=rngs, **kw)
    self.final_layer_norm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps, **kw)

  def __call__(self, input_ids: jax.Array) -> jax.Array:
    if input_ids.ndim != 2 or input_ids.shape[-1] > self.config.max_position_embeddings:
      raise ValueError(f"CLIPTextModel: expected input_ids (B, L<={self.config.max_position_embeddings}), "
                       f"got shape {input_ids.shape}")
    return self.final_layer_norm(self.encoder(self.embeddings(input_ids)))


def load_text_encoder(path, *, dtype=None, param_dtype=jnp.float32) -> CLIPTextModel:
  """Loads a converted text encoder from a checkpoint root (`path/text_encoder/`) or that folder."""
  return component_folders.load_component(path, "text_encoder", lambda config, source: CLIPTextModel(
      CLIPTextConfig.from_transformers(config, source=source), dtype=dtype, param_dtype=param_dtype,
      rngs=nnx.Rngs(0)))
