"""The spatio-audio-temporal transformer of AVSyncD (docs/reference.md §2.8, §2.9).

Activations are (B, F, H, W, C); inside the block tokens are (B*F, N, C) with
the frame as the fast index of B*F, as in the original.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from asva_jax.models.attention import Attention
from asva_jax.models.embeddings import TimestepEmbedding, sinusoidal_embedding
from asva_jax.models.feed_forward import FeedForward
from asva_jax.models.linear import Conv2d
from asva_jax.models.normalization import GroupNorm, LayerNorm


def cross_attention(attn: Attention, x: jax.Array, context: jax.Array, mask: jax.Array | None) -> jax.Array:
  """x (B*F, N, C) attends to context (B, F or 1, T, D); a shared context is projected once."""
  b, fc = context.shape[:2]
  frames = x.shape[0] // b
  k, v = attn.to_k(context), attn.to_v(context)
  if fc != frames:
    k = jnp.broadcast_to(k, (b, frames) + k.shape[2:])
    v = jnp.broadcast_to(v, (b, frames) + v.shape[2:])
  k = k.reshape((b * frames,) + k.shape[2:])
  v = v.reshape((b * frames,) + v.shape[2:])
  return attn.attend(attn.to_q(x), k, v, mask)


class BasicTransformerBlock3D(nnx.Module):
  """first-frame self-attn -> [audio cross-attn] -> text cross-attn -> temporal attn -> GEGLU FF."""

  def __init__(self, dim: int, *, heads: int, cross_attention_dim: int,
               audio_cross_attention_dim: int | None, implementation: str = "auto", dtype=None,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    akw = dict(heads=heads, implementation=implementation, **kw)
    nkw = dict(dtype=dtype, param_dtype=param_dtype)
    self.norm1 = LayerNorm(dim, **nkw)
    self.attn1 = Attention(dim, **akw)
    self.with_audio = audio_cross_attention_dim is not None
    if self.with_audio:
      self.norm_audio = LayerNorm(dim, **nkw)
      self.attn_audio = Attention(dim, cross_attention_dim=audio_cross_attention_dim, **akw)
    self.norm2 = LayerNorm(dim, **nkw)
    self.attn2 = Attention(dim, cross_attention_dim=cross_attention_dim, **akw)
    self.pos_embedding_temp = TimestepEmbedding(dim, dim, **kw)
    self.norm_temp = LayerNorm(dim, **nkw)
    self.attn_temp = Attention(dim, zero_out_kernel=True, **akw)
    self.norm3 = LayerNorm(dim, **nkw)
    self.ff = FeedForward(dim, **kw)
    self.dim = dim

  def __call__(self, x: jax.Array, frames: int, text: jax.Array, audio: jax.Array | None,
               audio_mask: jax.Array | None) -> jax.Array:
    """x (B*F, N, C); text (B, F|1, L, D_t); audio (B, F|1, T, D_a); audio_mask (B*F, 1, 1, T)."""
    bf, n, c = x.shape
    b = bf // frames

    # 1. Queries of every frame attend to the keys/values of frame 0 of the same video.
    h = self.norm1(x)
    h0 = h.reshape(b, frames, n, c)[:, 0]
    q = self.attn1.to_q(h).reshape(b, frames * n, c)
    x = x + self.attn1.attend(q, self.attn1.to_k(h0), self.attn1.to_v(h0)).reshape(bf, n, c)

    if self.with_audio:
      x = x + cross_attention(self.attn_audio, self.norm_audio(x), audio, audio_mask)
    x = x + cross_attention(self.attn2, self.norm2(x), text, None)

    # 4. Temporal attention per spatial location; the position embedding enters only the normed input.
    pos = sinusoidal_embedding(jnp.arange(frames), c).astype(x.dtype)
    pos = self.pos_embedding_temp(pos)
    xt = x.reshape(b, frames, n, c)
    h = self.norm_temp(xt + pos[None, :, None, :])
    h = h.transpose(0, 2, 1, 3).reshape(b * n, frames, c)
    h = self.attn_temp(h).reshape(b, n, frames, c).transpose(0, 2, 1, 3)
    x = x + h.reshape(bf, n, c)

    return x + self.ff(self.norm3(x))


class Transformer3D(nnx.Module):
  """GroupNorm per frame (eps 1e-6) -> proj_in (1x1) -> block -> proj_out (1x1) -> + input."""

  def __init__(self, dim: int, *, heads: int, norm_num_groups: int, cross_attention_dim: int,
               audio_cross_attention_dim: int | None, implementation: str = "auto", dtype=None,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.norm = GroupNorm(norm_num_groups, dim, eps=1e-6, dtype=dtype, param_dtype=param_dtype)
    self.proj_in = Conv2d(dim, dim, 1, **kw)
    self.transformer_blocks = nnx.List([BasicTransformerBlock3D(
        dim, heads=heads, cross_attention_dim=cross_attention_dim,
        audio_cross_attention_dim=audio_cross_attention_dim, implementation=implementation, **kw)])
    self.proj_out = Conv2d(dim, dim, 1, **kw)

  def __call__(self, x: jax.Array, text: jax.Array, audio: jax.Array | None,
               audio_mask: jax.Array | None) -> jax.Array:
    """x (B, F, H, W, C); audio_mask (B, F, T) bool."""
    b, f, hh, ww, c = x.shape
    h = self.proj_in(self.norm(x.reshape(b * f, hh, ww, c)))
    h = h.reshape(b * f, hh * ww, c)
    mask = None if audio_mask is None else audio_mask.reshape(b * f, 1, 1, audio_mask.shape[-1])
    for block in self.transformer_blocks:
      h = block(h, f, text, audio, mask)
    h = self.proj_out(h.reshape(b * f, hh, ww, c))
    return x + h.reshape(x.shape)
