"""Entry-point wrapper: expected failures become one line on stderr and exit status 2.

    if __name__ == "__main__":
      command.run(main)

`main` is an absl main. An `AsvaError` (or absl's `UsageError`) prints
`error: <message>` and exits 2 with no traceback; `--verbose` on the command
line or `ASVA_VERBOSE=1` in the environment shows the traceback too. Any other
exception is a bug and propagates with its traceback.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable

from absl import app

from asva_jax.errors import AsvaError

EXIT_BAD_INPUT = 2


def verbose(argv: list[str]) -> bool:
  return "--verbose" in argv or os.environ.get("ASVA_VERBOSE", "") not in ("", "0")


def fail(message: str, argv: list[str] | None = None) -> None:
  """Print `error: message` (plus the active traceback when verbose) and exit 2."""
  if verbose(sys.argv if argv is None else argv):
    traceback.print_exc()
  print(f"error: {message}", file=sys.stderr)
  sys.exit(EXIT_BAD_INPUT)


def run(main: Callable[[list[str]], object], argv: list[str] | None = None) -> None:
  argv = list(sys.argv if argv is None else argv)
  if "--verbose" in argv:
    argv.remove("--verbose")
    os.environ["ASVA_VERBOSE"] = "1"

  def guarded(args):
    try:
      return main(args)
    except AsvaError as e:
      fail(str(e), argv)

  app.run(guarded, argv=argv)
