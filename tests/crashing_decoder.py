"""A `process` for `data_prep.build.build` whose worker dies on one video (tests/test_data_build.py).

A module of its own with few imports: spawned worker processes import it to unpickle
the function, and importing the whole test module there would cost seconds per worker.
"""

import multiprocessing
import os
import signal

from asva_jax.prep import build


def crash_on(entry, config, class_names, *, victim: str):
  """`process_video`, except that a worker process handed `victim` dies of SIGKILL (as from a
  segfault in FFmpeg or the OOM killer); in the main process it decodes normally."""
  if victim in entry.path and multiprocessing.parent_process() is not None:
    os.kill(os.getpid(), signal.SIGKILL)
  return build.process_video(entry, config, class_names)
