"""The project's one base class for expected failures.

An `AsvaError` is a problem with the user's input (a file, a folder, a flag): its
message names the offending path or flag, says what is wrong and, where it can,
what to do. Commands turn it into one line on stderr and a non-zero exit
(`asva_jax.commands.runner.run`); anything else is a bug and keeps its traceback.
"""


class AsvaError(Exception):
  """Bad input the user can fix; the message is the whole story."""


class ConfigError(AsvaError, ValueError):
  """A training config field has a value the trainer cannot use."""
