"""The data pipeline's error type."""


from asva_jax.errors import AsvaError


class DataError(AsvaError, ValueError):
  """The shards are missing, incomplete or not a dataset written by data_prep.build."""
