"""One optimizer step of AVSyncD, as one jitted function over sharded arrays.

state = {"step", "params", "opt_state"} (donated), and "ema" when the run keeps EMA
weights (`training.ema`, updated here after the optimizer); the frozen tree and the batch
are inputs. The batch's micro-batches (`train.grad_accum`) are a scan; each
device keeps its own rows, so the scan needs no communication. All randomness
(latent sample, audio dropout, timesteps, noise) derives from (seed, step,
micro-batch), so a resumed run draws exactly what an uninterrupted one draws.
"""

from __future__ import annotations


import jax
import jax.numpy as jnp
import optax
from flax import nnx

from asva_jax.training import ema as ema_lib
from asva_jax.training.build import audio_keys_option
from asva_jax.training.objective import diffusion_loss


def step_key(seed: int, step: jax.Array) -> jax.Array:
  return jax.random.fold_in(jax.random.key(seed), step)


def make_loss_fn(graphdef, config, alphas_cumprod, audio_mask, backend: str | None = None):
  """loss(params, frozen, batch, key) for one micro-batch; the audio attention's form
  (config.model.audio_keys) is chosen here, once, from the concrete masks and the step's backend."""
  keys = audio_keys_option(str(config.model.get("audio_keys", "auto")), audio_mask, backend)
  scaling = float(config.diffusion.scaling_factor)
  drop = float(config.diffusion.audio_drop_prob)
  prediction = str(config.diffusion.prediction_type)

  def loss_fn(params, frozen, batch, key):
    model = nnx.merge(graphdef, params, frozen)
    moments = (batch["vae_mean"], batch["vae_logvar"]) if "vae_mean" in batch else None
    return diffusion_loss(model.unet, model.autoencoder, model.audio_encoder, batch.get("video"),
                          batch["mel"], batch["text"], audio_mask, alphas_cumprod, key,
                          scaling_factor=scaling, audio_drop_prob=drop, vae_moments=moments,
                          prediction_type=prediction, audio_keys=keys)
  return loss_fn


def split_micro(batch: dict, accum: int) -> dict:
  """(B, ...) -> (accum, B/accum, ...) taking every accum-th row, so each device's rows stay local."""
  def split(x):
    x = x.reshape((x.shape[0] // accum, accum) + x.shape[1:])
    return jnp.moveaxis(x, 1, 0)
  return jax.tree.map(split, batch)


def make_train_step(graphdef, optimizer: optax.GradientTransformation, config, alphas_cumprod,
                    audio_mask, backend: str | None = None):
  """train_step(state, frozen, batch) -> (state, metrics); not yet jitted (see `jit_train_step`).
  backend: the platform the step runs on (default: JAX's default backend)."""
  loss_fn = make_loss_fn(graphdef, config, alphas_cumprod, audio_mask, backend)
  grad_fn = jax.value_and_grad(loss_fn)
  accum = int(config.train.grad_accum)
  seed = int(config.seed)

  def train_step(state, frozen, batch):
    key = step_key(seed, state["step"])
    params = state["params"]
    if accum == 1:
      loss, grads = grad_fn(params, frozen, batch, key)
    else:
      def body(carry, xs):
        i, micro = xs
        loss, grads = grad_fn(params, frozen, micro, jax.random.fold_in(key, i))
        total_loss, total = carry
        return (total_loss + loss, jax.tree.map(jnp.add, total, grads)), None
      zeros = jax.tree.map(jnp.zeros_like, params)
      (loss, grads), _ = jax.lax.scan(body, (jnp.zeros((), jnp.float32), zeros),
                                      (jnp.arange(accum), split_micro(batch, accum)))
      loss, grads = loss / accum, jax.tree.map(lambda g: g / accum, grads)
    updates, opt_state = optimizer.update(grads, state["opt_state"], params)
    new_state = {"step": state["step"] + 1, "params": optax.apply_updates(params, updates),
                 "opt_state": opt_state}
    if "ema" in state:
      decay = ema_lib.decay_at(config.train, state["step"])
      new_state["ema"] = ema_lib.ema_update(state["ema"], new_state["params"], decay)
    return new_state, {"loss": loss, "grad_norm": optax.tree.norm(grads)}
  return train_step


def jit_train_step(train_step, state_shardings, frozen_shardings, batch_shardings, replicated):
  return jax.jit(train_step, in_shardings=(state_shardings, frozen_shardings, batch_shardings),
                 out_shardings=(state_shardings, replicated), donate_argnums=(0,))
