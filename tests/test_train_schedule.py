"""The learning rate of `train.lr_warmdown_steps` (asva_jax.training.state.learning_rate) against the
documented formula, and its effect on AdamW's first update (optax's adamw at that rate)."""

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from asva_jax.training.state import learning_rate, make_optimizer

RATE, STEPS, WARMDOWN = 1e-3, 100, 40


def config(warmdown: int) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(learning_rate=RATE, num_steps=STEPS, lr_warmdown_steps=warmdown,
                                        b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, clip_norm=1e9))


def test_constant_without_warmdown():
  assert learning_rate(config(0)) == RATE


@pytest.mark.parametrize("step", [0, 30, 60, 61, 80, 99, 100])
def test_constant_then_linear_to_zero_over_the_last_steps(step):
  expected = RATE if step <= STEPS - WARMDOWN else RATE * (STEPS - step) / WARMDOWN
  assert float(learning_rate(config(WARMDOWN))(step)) == pytest.approx(expected, rel=1e-6, abs=1e-12)


def test_the_optimizer_steps_at_that_rate():
  """After 80 updates with zero gradients Adam's moments are zero, so update 81 (schedule count 80:
  rate RATE / 2) is -rate * m_hat / (sqrt(v_hat) + eps), written out here."""
  params = {"w": jnp.ones(3)}
  g = np.asarray([1.0, -2.0, 3.0])
  opt = make_optimizer(config(WARMDOWN))
  state = opt.init(params)
  for _ in range(80):
    _, state = opt.update({"w": jnp.zeros(3)}, state, params)
  updates, _ = opt.update({"w": jnp.asarray(g, jnp.float32)}, state, params)
  m_hat, v_hat = 0.1 * g / (1 - 0.9 ** 81), 0.001 * g ** 2 / (1 - 0.999 ** 81)
  expected = -(RATE / 2) * m_hat / (np.sqrt(v_hat) + 1e-8)
  np.testing.assert_allclose(np.asarray(updates["w"]), expected, rtol=1e-5)
