"""The error every evaluation-network loader raises for a bad weight file."""

from asva_jax.errors import AsvaError


class EvalModelError(AsvaError, ValueError):
  """A detector file is missing, unreadable, or its tensors do not fit the network."""
