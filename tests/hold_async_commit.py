"""`python -m tests.hold_async_commit [asva_jax.train flags]`: training whose checkpoint of step
$ASVA_HOLD_STEP never commits (tests/test_train_multihost.py).

Orbax's asynchronous save writes a step into a temporary folder and renames it at the end
(`finalize`). Holding that rename keeps the save in flight for as long as the test needs
to SIGKILL the process there, as a preemption without notice would.

The hook patches an Orbax internal (0.12.8: `atomicity.AtomicRenameTemporaryPath.finalize`, a
coroutine). Where another Orbax lacks it, or never calls it, this exits with an `error:` line
instead of turning the test into one that holds nothing.
"""

import asyncio
import inspect
import os
import runpy
import sys

import orbax.checkpoint

PATCHED = "orbax.checkpoint._src.path.atomicity.AtomicRenameTemporaryPath.finalize"


def fail(reason: str) -> None:
  print(f"error: tests/hold_async_commit.py patches {PATCHED} (written for Orbax 0.12.8; this is "
        f"{orbax.checkpoint.__version__}): {reason}; update the hook", flush=True)
  os._exit(3)


try:
  from orbax.checkpoint._src.path import atomicity
  _finalize = atomicity.AtomicRenameTemporaryPath.finalize
  atomicity.AtomicRenameTemporaryPath.get_final  # noqa: B018 - the hook reads the step's name from it
except (ImportError, AttributeError) as e:
  fail(f"it is not there ({type(e).__name__}: {e})")
if not inspect.iscoroutinefunction(_finalize):
  fail("it is no longer a coroutine")

HOLD = os.environ["ASVA_HOLD_STEP"]
finalized = []


async def finalize(self):
  finalized.append(self.get_final().name)
  if finalized[-1] == HOLD:
    print(f"holding the commit of step {HOLD}", flush=True)
    await asyncio.sleep(3600)
  await _finalize(self)


atomicity.AtomicRenameTemporaryPath.finalize = finalize
try:
  runpy.run_module("asva_jax.train", run_name="__main__", alter_sys=True)
except SystemExit as e:
  if e.code not in (0, None):
    raise
# The test kills the process while it holds; a run that ends instead never held its step.
fail(f"the run ended without holding step {HOLD} (steps committed through the hook: {finalized or 'none'})")
