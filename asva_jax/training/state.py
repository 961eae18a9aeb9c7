"""The trainable/frozen split and the optimizer (docs/reference.md §6.5).

`nnx.split` with the trainable filter gives two trees: gradients and AdamW act on
the trainable one only; the frozen one may be stored in bfloat16 (the original
autocasts it anyway) and never changes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from asva_jax.training.build import trainable_filter


def frozen_cast(config):
  """leaf -> leaf in `precision.frozen` (floating leaves only; ShapeDtypeStructs of abstract models too)."""
  frozen_dtype = jnp.dtype(config.precision.frozen)
  def cast(x):
    if not jnp.issubdtype(x.dtype, jnp.floating):
      return x
    if isinstance(x, jax.ShapeDtypeStruct):  # abstract models (AOT compilation)
      return jax.ShapeDtypeStruct(x.shape, frozen_dtype)
    return x.astype(frozen_dtype)
  return cast


def split_model(model, config):
  """(graphdef, trainable State, frozen State), the frozen tree cast to `precision.frozen`."""
  graphdef, params, frozen = nnx.split(model, trainable_filter(config.model), ...)
  return graphdef, params, jax.tree.map(frozen_cast(config), frozen)


def make_optimizer(train_config) -> optax.GradientTransformation:
  """Global-norm clipping, then AdamW with decay on every trainable tensor, constant rate."""
  return optax.chain(
      optax.clip_by_global_norm(train_config.clip_norm),
      optax.adamw(train_config.learning_rate, b1=train_config.b1, b2=train_config.b2,
                  eps=train_config.eps, weight_decay=train_config.weight_decay))


def count_params(tree) -> int:
  return sum(int(x.size) for x in jax.tree.leaves(tree))
