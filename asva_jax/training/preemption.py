"""SIGTERM -> save and stop at the next step boundary, agreed by every host."""

from __future__ import annotations

import signal
import threading

import jax
import numpy as np


class Preemption:
  """SIGTERM sets a flag; the loop saves and stops at the next step boundary (all hosts agree)."""

  def __init__(self):
    self.flag = False
    self._previous = None
    if threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame):
    del signum, frame
    self.flag = True

  def requested(self) -> bool:
    if jax.process_count() == 1:
      return self.flag
    from jax.experimental import multihost_utils
    return bool(np.any(multihost_utils.process_allgather(np.array([self.flag]))))

  def restore(self):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
