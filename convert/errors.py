"""The error every converter raises for bad PyTorch inputs."""

from asva_jax.torch_weights import WeightFileError


class ConversionError(WeightFileError):
  """The PyTorch files cannot be converted: missing, unreadable or mismatched tensors."""
