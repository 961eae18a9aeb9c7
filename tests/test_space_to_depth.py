import jax
import jax.numpy as jnp
import numpy as np
import pytest

from asva_jax.models.space_to_depth import SpaceToDepth
from asva_jax.models.vae import sample_latent


def test_round_trip_and_patch_layout():
  codec = SpaceToDepth(factor=2)
  images = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (2, 3, 4, 6, 3)), jnp.float32)
  mean, logvar = codec.encode(images)
  assert mean.shape == (2, 3, 2, 3, 12)
  # latent (i, j) holds the 2x2 patch at rows 2i..2i+1, cols 2j..2j+1, row-major, channels fastest
  np.testing.assert_array_equal(mean[1, 2, 1, 2], images[1, 2, 2:4, 4:6].reshape(-1))
  np.testing.assert_array_equal(codec.decode(mean), images)
  # zero variance: a posterior sample is the mean exactly
  np.testing.assert_array_equal(sample_latent(jax.random.key(0), mean, logvar), mean)


def test_bad_shapes_are_named():
  with pytest.raises(ValueError, match="cannot fold"):
    SpaceToDepth(factor=4).encode(jnp.zeros((1, 6, 8, 3)))
  with pytest.raises(ValueError, match="expected 48"):
    SpaceToDepth(factor=4).decode(jnp.zeros((1, 2, 2, 12)))
