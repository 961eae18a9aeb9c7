"""The error every evaluation-network loader raises for a bad weight file."""

from asva_jax.torch_weights import WeightFileError


class EvalModelError(WeightFileError):
  """A detector file is missing, unreadable, or its tensors do not fit the network."""
