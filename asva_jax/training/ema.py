"""EMA weights: an exponential moving average of the trainable parameters (`train.ema_decay`).

After every optimizer step, inside the jitted step,
    ema <- d_n * ema + (1 - d_n) * params          (n = the update's index, 0-based)
with d_n = ema_decay, or min(ema_decay, (1 + n) / (10 + n)) with `train.ema_warmup`, so that
the first updates do not keep the random initial weights for thousands of steps. The average
starts as a copy of the initial parameters, lives beside them in the state (same shapes,
dtypes and shardings) and is saved as the checkpoint item `ema`. On the demo it lagged the raw
weights at 1500 steps and synchronised best at 3000, where the demo uses it (docs/demo.md).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from asva_jax.errors import ConfigError


def has_ema(train_config) -> bool:
  """Whether a run keeps EMA weights (configs recorded before the field existed have none)."""
  return float(train_config.get("ema_decay", 0.0)) > 0


def check_ema_config(train_config) -> None:
  decay = float(train_config.get("ema_decay", 0.0))
  if not 0 <= decay < 1:
    raise ConfigError(f"--config.train.ema_decay={decay}: must be in [0, 1) (0 turns EMA weights off)")


def decay_at(train_config, n: jax.Array) -> jax.Array:
  """d_n of update n (a traced int): the configured decay, capped by the warm-up when it is on."""
  decay = jnp.float32(float(train_config.ema_decay))
  if not bool(train_config.get("ema_warmup", False)):
    return decay
  n = jnp.asarray(n, jnp.float32)
  return jnp.minimum(decay, (1 + n) / (10 + n))


def ema_update(ema, params, decay: jax.Array):
  """ema * decay + params * (1 - decay), leaf by leaf, in each leaf's dtype."""
  return jax.tree.map(lambda e, p: (decay * e + (1 - decay) * p).astype(e.dtype), ema, params)


def copy_tree(tree):
  """New buffers holding `tree`'s values with its shardings: the EMA may not share buffers with the
  params, since the step donates both."""
  return jax.tree.map(lambda x: jnp.array(x, copy=True), tree)
