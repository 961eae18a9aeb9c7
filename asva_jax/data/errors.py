"""The data pipeline's error type."""


class DataError(ValueError):
  """The shards are missing, incomplete or not a dataset written by data_prep.build."""
