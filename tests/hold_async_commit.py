"""`python -m tests.hold_async_commit [asva_jax.train flags]`: training whose checkpoint of step
$ASVA_HOLD_STEP never commits (tests/test_train_multihost.py).

Orbax's asynchronous save writes a step into a temporary folder and renames it at the end
(`finalize`). Holding that rename keeps the save in flight for as long as the test needs
to SIGKILL the process there, as a preemption without notice would.
"""

import asyncio
import os
import runpy

from orbax.checkpoint._src.path import atomicity

HOLD = os.environ["ASVA_HOLD_STEP"]
_finalize = atomicity.AtomicRenameTemporaryPath.finalize


async def finalize(self):
  if self.get_final().name == HOLD:
    print(f"holding the commit of step {HOLD}", flush=True)
    await asyncio.sleep(3600)
  await _finalize(self)


atomicity.AtomicRenameTemporaryPath.finalize = finalize
runpy.run_module("asva_jax.train", run_name="__main__", alter_sys=True)
