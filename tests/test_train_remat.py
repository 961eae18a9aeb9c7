"""Rematerialised blocks work under the train step's transform style (plain `jax.value_and_grad`
over a merged module, where `nnx.remat` failed with "Cannot mutate Param from a different trace
level") and give the gradients of the plain blocks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from asva_jax.models.resnet import ResnetBlock3D
from asva_jax.models.unet_3d_blocks import apply
from asva_jax.errors import ConfigError
from asva_jax.training.build import remat_option


@pytest.mark.parametrize("remat", ["full", "dots_with_no_batch_dims_saveable"])
def test_remat_gradients_equal_plain_gradients(remat):
  block = ResnetBlock3D(8, 16, temb_channels=8, groups=4, eps=1e-5, rngs=nnx.Rngs(0))
  graphdef, params, rest = nnx.split(block, nnx.Param, ...)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((2, 3, 4, 4, 8)), jnp.float32)
  temb = jnp.asarray(rng.standard_normal((2, 8)), jnp.float32)

  def loss(params, policy):
    module = nnx.merge(graphdef, params, rest)
    return jnp.mean(jnp.square(apply(module, x, temb, remat=policy)))

  plain = jax.jit(jax.value_and_grad(lambda p: loss(p, False)))(params)
  option = remat_option(remat)
  rematted_fn = jax.jit(jax.value_and_grad(lambda p: loss(p, option)))
  primitives = {e.primitive.name for e in jax.make_jaxpr(lambda p: loss(p, option))(params).jaxpr.eqns}
  assert primitives & {"checkpoint", "remat", "remat2"}, primitives
  rematted = rematted_fn(params)
  np.testing.assert_allclose(rematted[0], plain[0], rtol=1e-6)
  for a, b in zip(jax.tree.leaves(rematted[1]), jax.tree.leaves(plain[1])):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_unknown_remat_policy_is_a_config_error():
  with pytest.raises(ConfigError, match="--config.remat='nonsense'"):
    remat_option("nonsense")
