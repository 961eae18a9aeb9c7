"""Command modules imported into the test process one at a time.

absl flags are process-global: two commands that both define `--out` cannot be
imported together, so in-process command tests (which share compilations with
the rest of the suite) import their command through `cli_module` and drop its
flags again afterwards.
"""

import contextlib
import importlib
import sys

from absl import flags


@contextlib.contextmanager
def cli_module(name: str):
  before = set(flags.FLAGS)
  module = importlib.import_module(name)
  added = set(flags.FLAGS) - before
  try:
    yield module
  finally:
    for flag in added:
      delattr(flags.FLAGS, flag)
    sys.modules.pop(name, None)
