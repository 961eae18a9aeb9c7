"""Multi-head attention as in diffusers' `Attention` (no q/k/v bias, biased output)."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from flax import nnx

from asva_jax.models.linear import Linear

IMPLEMENTATIONS = ("reference", "auto", "xla", "cudnn")


def dot_product_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array | None = None,
                          implementation: str = "auto") -> jax.Array:
  """softmax(q kᵀ / sqrt(d) + mask) v over (B, T, heads, d) arrays.

  `mask` is boolean, True = may attend, broadcastable to (B, heads, T_q, T_k).
  "reference" is the exact float32 formula; the others go through
  `jax.nn.dot_product_attention`. "auto" is cuDNN flash attention on a GPU where it compiles
  for these shapes and dtype (forward and gradient), JAX's XLA formula elsewhere
  (`kernel_for`); a compiled program shows which runs (`kernels_in`).
  """
  if implementation == "reference":
    scale = 1.0 / math.sqrt(q.shape[-1])
    scores = jnp.einsum("bqhd,bkhd->bhqk", q.astype(jnp.float32), k.astype(jnp.float32)) * scale
    if mask is not None:
      scores = jnp.where(mask, scores, -jnp.inf)
    probs = jax.nn.softmax(scores, axis=-1)
    return jnp.einsum("bhqk,bkhd->bqhd", probs, v.astype(jnp.float32)).astype(q.dtype)
  if implementation not in IMPLEMENTATIONS:
    raise ValueError(f"attention implementation {implementation!r} not in {IMPLEMENTATIONS}")
  impl = kernel_for(q, k, v, mask) if implementation == "auto" else implementation
  return jax.nn.dot_product_attention(q, k, v, mask=mask, implementation=impl)


def kernel_for(q, k, v, mask=None) -> str | None:
  """The kernel "auto" runs: "cudnn" on a GPU backend when it compiles for these shapes, else None
  (JAX's XLA attention: on every other backend exactly what "auto" ran before)."""
  if jax.default_backend() != "gpu":
    return None
  shape = lambda x: None if x is None else (tuple(x.shape), jnp.dtype(x.dtype).name)  # noqa: E731
  return "cudnn" if cudnn_compiles(shape(q), shape(k), shape(v), shape(mask)) else None


@functools.lru_cache(maxsize=None)
def cudnn_compiles(q, k, v, mask) -> bool:
  """Whether cuDNN's fused attention compiles, forward and gradient, for these (shape, dtype)s.
  cuDNN refuses some head sizes, float32 and some masks; asking its compiler is the only complete
  test. Cached: one small compilation per distinct attention shape."""
  def loss(q, k, v, mask):
    out = jax.nn.dot_product_attention(q, k, v, mask=mask, implementation="cudnn")
    return out.astype(jnp.float32).sum()
  spec = lambda x: None if x is None else jax.ShapeDtypeStruct(x[0], x[1])  # noqa: E731
  try:
    jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2))).lower(
        spec(q), spec(k), spec(v), spec(mask)).compile()
  except Exception:  # any refusal (unsupported shape, dtype, mask, cuDNN version) means: use XLA
    return False
  return True


def kernels_in(compiled_text: str) -> str:
  """Which attention a compiled program runs, read from its text (`compiled.as_text()`): cuDNN's
  fused-attention custom calls when present (forward and backward counted), else XLA's."""
  n = compiled_text.count("__cudnn$fmha")
  return f"cudnn flash ({n} fused calls)" if n else "xla"


class Attention(nnx.Module):
  """to_q / to_k / to_v (no bias) and to_out.0 (with bias); `heads` heads of size C/heads."""

  def __init__(self, query_dim: int, *, heads: int, cross_attention_dim: int | None = None,
               zero_out_kernel: bool = False, implementation: str = "auto", dtype=None,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    if query_dim % heads:
      raise ValueError(f"Attention: {query_dim} channels do not split into {heads} heads")
    kv_dim = cross_attention_dim or query_dim
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.heads = heads
    self.implementation = implementation
    self.to_q = Linear(query_dim, query_dim, use_bias=False, **kw)
    self.to_k = Linear(kv_dim, query_dim, use_bias=False, **kw)
    self.to_v = Linear(kv_dim, query_dim, use_bias=False, **kw)
    self.to_out = nnx.List([Linear(query_dim, query_dim, zero_kernel=zero_out_kernel, **kw)])

  def split_heads(self, x: jax.Array) -> jax.Array:
    return x.reshape(x.shape[:-1] + (self.heads, x.shape[-1] // self.heads))

  def __call__(self, x: jax.Array, context: jax.Array | None = None,
               mask: jax.Array | None = None) -> jax.Array:
    """x: (B, T_q, C); context: (B, T_k, C_kv) (defaults to x); mask: see dot_product_attention."""
    context = x if context is None else context
    return self.attend(self.to_q(x), self.to_k(context), self.to_v(context), mask)

  def attend(self, q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Attention over already projected q (B, T_q, C), k and v (B, T_k, C), then to_out."""
    out = dot_product_attention(self.split_heads(q), self.split_heads(k), self.split_heads(v), mask,
                                self.implementation)
    return self.to_out[0](out.reshape(q.shape))
