"""How many XLA compilations ran: the proof that a request reuses the start-up's compilation."""

from __future__ import annotations

import threading

# jax._src.dispatch.BACKEND_COMPILE_EVENT: recorded once per XLA compilation (a cache hit records nothing).
BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


class CompileCounter:
  """Counts jax's backend compilations from `start()` until `close()` (a jax.monitoring listener)."""

  def __init__(self):
    self.count = 0
    self._lock = threading.Lock()
    self._listening = False

  def _on_event(self, event: str, duration: float, **kwargs) -> None:
    if event == BACKEND_COMPILE_EVENT:
      with self._lock:
        self.count += 1

  def start(self) -> "CompileCounter":
    import jax.monitoring
    if not self._listening:
      jax.monitoring.register_event_duration_secs_listener(self._on_event)
      self._listening = True
    return self

  def close(self) -> None:
    import jax.monitoring
    if self._listening:
      jax.monitoring.unregister_event_duration_listener(self._on_event)
      self._listening = False
