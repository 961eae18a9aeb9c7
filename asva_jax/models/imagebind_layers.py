"""Building blocks of ImageBind's towers (docs/reference.md §4.2-4.4), named as in PyTorch.

The audio branch (AVSyncD's frozen encoder) and the evaluation's vision and text
towers share the trunk: the attention appends a learned key/value only for audio
(`add_bias_kv`), only vision has a LayerNorm before the blocks, only text masks
(causally).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from asva_jax.models.attention import dot_product_attention
from asva_jax.models.linear import Linear, torch_uniform
from asva_jax.models.normalization import LayerNorm


class Buffer(nnx.Variable):
  """A fixed tensor of the PyTorch module (a registered buffer): stored and converted, never trained."""


class PatchStem(nnx.Module):
  """`rgbt_stem`: a bias-free strided conv over the (mel, time) image, then LayerNorm (eps 1e-5)."""

  def __init__(self, embed_dim: int, kernel_size: int, stride: int, *, dtype=None,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    self.proj = nnx.Conv(1, embed_dim, (kernel_size, kernel_size), (stride, stride), padding="VALID",
                         use_bias=False, dtype=dtype, param_dtype=param_dtype,
                         kernel_init=torch_uniform(kernel_size * kernel_size), rngs=rngs)
    self.norm_layer = LayerNorm(embed_dim, eps=1e-5, dtype=dtype, param_dtype=param_dtype)

  def __call__(self, mel: jax.Array) -> jax.Array:
    """(B, mel, time, 1) -> (B, rows * cols, D), row (mel) major."""
    x = self.proj(mel)
    return self.norm_layer(x.reshape(x.shape[0], -1, x.shape[-1]))


class PosEmbedding(nnx.Module):
  """`pos_embedding_helper`: one learned embedding per token, CLS included."""

  def __init__(self, num_tokens: int, embed_dim: int, *, param_dtype=jnp.float32, rngs: nnx.Rngs):
    self.pos_embed = nnx.Param(0.02 * jax.random.truncated_normal(
        rngs.params(), -2.0, 2.0, (1, num_tokens, embed_dim), param_dtype))


class AudioPreprocessor(nnx.Module):
  """Mel image -> patch tokens with a prepended CLS token and position embedding."""

  def __init__(self, embed_dim: int, kernel_size: int, stride: int, num_tokens: int, *, dtype=None,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    self.dtype = dtype
    self.cls_token = nnx.Param(jnp.zeros((1, 1, embed_dim), param_dtype))
    self.rgbt_stem = PatchStem(embed_dim, kernel_size, stride, dtype=dtype, param_dtype=param_dtype,
                               rngs=rngs)
    self.pos_embedding_helper = PosEmbedding(num_tokens, embed_dim, param_dtype=param_dtype, rngs=rngs)

  def __call__(self, mel: jax.Array) -> jax.Array:
    patches = self.rgbt_stem(mel)
    dtype = self.dtype or patches.dtype
    cls = jnp.broadcast_to(self.cls_token[...], (patches.shape[0], 1, patches.shape[-1]))
    tokens = jnp.concatenate([cls.astype(dtype), patches.astype(dtype)], axis=1)
    return tokens + self.pos_embedding_helper.pos_embed[...].astype(dtype)


class MultiheadAttentionBiasKV(nnx.Module):
  """`torch.nn.MultiheadAttention(bias=True, add_bias_kv=...)`, batch-first.

  Q, K, V come from one fused projection `in_proj` (kernel (D, 3D): q | k | v); with
  `add_bias_kv` one learned key `bias_k` and value `bias_v` are appended to the sequence
  after it, so keys and values have one position more than the queries.
  """

  def __init__(self, embed_dim: int, num_heads: int, *, add_bias_kv: bool = True,
               attention: str = "auto", dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    if embed_dim % num_heads:
      raise ValueError(f"MultiheadAttention: {embed_dim} channels do not split into {num_heads} heads")
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.num_heads = num_heads
    self.attention = attention
    self.in_proj = Linear(embed_dim, 3 * embed_dim, **kw)
    extra = lambda: nnx.Param(0.02 * jax.random.normal(rngs.params(), (1, 1, embed_dim), param_dtype))
    self.bias_k = extra() if add_bias_kv else None
    self.bias_v = extra() if add_bias_kv else None
    self.out_proj = Linear(embed_dim, embed_dim, **kw)

  def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """x (B, L, D); mask boolean (L, L), True = may attend (not with add_bias_kv)."""
    b, _, d = x.shape
    q, k, v = jnp.split(self.in_proj(x), 3, axis=-1)
    if self.bias_k is not None:
      k = jnp.concatenate([k, jnp.broadcast_to(self.bias_k[...], (b, 1, d)).astype(k.dtype)], axis=1)
      v = jnp.concatenate([v, jnp.broadcast_to(self.bias_v[...], (b, 1, d)).astype(v.dtype)], axis=1)
    heads = lambda t: t.reshape(t.shape[:-1] + (self.num_heads, d // self.num_heads))
    out = dot_product_attention(heads(q), heads(k), heads(v), mask=mask, implementation=self.attention)
    return self.out_proj(out.reshape(out.shape[:-2] + (d,)))


class Mlp(nnx.Module):
  """fc1 -> exact GELU -> fc2."""

  def __init__(self, dim: int, hidden: int, *, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.fc1 = Linear(dim, hidden, **kw)
    self.fc2 = Linear(hidden, dim, **kw)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.fc2(jax.nn.gelu(self.fc1(x), approximate=False))


class BlockWithMasking(nnx.Module):
  """Pre-norm transformer block: x + attn(norm_1(x)), then x + mlp(norm_2(x)) (LN eps 1e-6).

  ImageBind's DropPath is omitted: the block is deterministic (eval mode).
  """

  def __init__(self, dim: int, num_heads: int, mlp_ratio: int = 4, *, add_bias_kv: bool = True,
               attention: str = "auto", dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype)
    self.attn = MultiheadAttentionBiasKV(dim, num_heads, add_bias_kv=add_bias_kv, attention=attention,
                                         rngs=rngs, **kw)
    self.norm_1 = LayerNorm(dim, eps=1e-6, **kw)
    self.mlp = Mlp(dim, mlp_ratio * dim, rngs=rngs, **kw)
    self.norm_2 = LayerNorm(dim, eps=1e-6, **kw)

  def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    x = x + self.attn(self.norm_1(x), mask)
    return x + self.mlp(self.norm_2(x))


class SimpleTransformer(nnx.Module):
  """The trunk: an optional LayerNorm (`pre_transformer_layer.0`, vision), the blocks, no final norm."""

  def __init__(self, dim: int, num_blocks: int, num_heads: int, *, add_bias_kv: bool = True,
               pre_transformer_ln: bool = False, mlp_ratio: int = 4, attention: str = "auto",
               dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    self.pre_transformer_layer = (nnx.List([LayerNorm(dim, eps=1e-6, dtype=dtype, param_dtype=param_dtype)])
                                  if pre_transformer_ln else None)
    self.blocks = nnx.List([
        BlockWithMasking(dim, num_heads, mlp_ratio, add_bias_kv=add_bias_kv, attention=attention,
                         dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        for _ in range(num_blocks)])

  def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    if self.pre_transformer_layer is not None:
      x = self.pre_transformer_layer[0](x)
    for block in self.blocks:
      x = block(x, mask)
    return x


class SelectToken(nnx.Module):
  """Head slot 1: keeps one token (CLS) of (B, L, D)."""

  def __init__(self, index: int = 0):
    self.index = index

  def __call__(self, x: jax.Array) -> jax.Array:
    return x[:, self.index]


class Normalize(nnx.Module):
  """Postprocessor slot 0: L2 normalisation of the last axis (torch.nn.functional.normalize)."""

  def __call__(self, x: jax.Array) -> jax.Array:
    x32 = x.astype(jnp.float32)
    norm = jnp.sqrt(jnp.sum(jnp.square(x32), axis=-1, keepdims=True))
    return (x32 / jnp.maximum(norm, 1e-12)).astype(x.dtype)


class LogitScaling(nnx.Module):
  """Postprocessor slot 1: multiply by min(exp(log_logit_scale), max) (a fixed buffer, ln 20)."""

  def __init__(self, init: float = 20.0, max_scale: float = 100.0):
    self.max_scale = max_scale
    self.log_logit_scale = Buffer(jnp.asarray(jnp.log(init), jnp.float32))

  def __call__(self, x: jax.Array) -> jax.Array:
    scale = jnp.minimum(jnp.exp(self.log_logit_scale[...]), self.max_scale)
    return (scale * x.astype(jnp.float32)).astype(x.dtype)
