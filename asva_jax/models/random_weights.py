"""Random weights for an abstract module, drawn with numpy.

Initialising a large model op by op in JAX compiles every initialiser (minutes on a
loaded CPU); filling an abstract (`nnx.eval_shape`) module from numpy costs nothing
to compile. For benchmarks and test checkpoints, where the values only need a sane scale.
"""

from __future__ import annotations

import numpy as np
from flax import nnx


def randomized(abstract: nnx.Module, seed: int) -> nnx.Module:
  """Fills `abstract` in place: scales near 1, matrices at fan-in scale, vectors small."""
  rng = np.random.default_rng(seed)
  for path, var in nnx.to_flat_state(nnx.state(abstract)):
    shape, dtype, name = var.get_value().shape, var.get_value().dtype, str(path[-1])
    if name == "scale":
      value = 1 + 0.1 * rng.standard_normal(shape)
    elif len(shape) > 1:
      value = rng.standard_normal(shape) / np.sqrt(np.prod(shape[:-1]))
    else:
      value = 0.1 * rng.standard_normal(shape)
    var.set_value(np.asarray(value, dtype))
  return abstract
