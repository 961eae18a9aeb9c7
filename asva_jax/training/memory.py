"""What a compiled step needs on a device, and which remat setting fits: XLA's own memory analysis.

Used to choose the rematerialisation ("the fastest setting that fits") without running
anything: `fits` compares the compiled program's need with the device's memory.
"""

from __future__ import annotations

import jax

# The checkpoint policies between remat "none" and "full", fastest first: save every matmul
# output; save only the matmuls without batch dimensions (weights by activations).
REMAT_POLICIES = ("dots_saveable", "dots_with_no_batch_dims_saveable")


def peak_bytes(compiled) -> int | None:
  """Bytes a compiled program holds at once on a device: arguments + temporaries + outputs, minus the
  outputs aliased to (donated) arguments. None when the backend gives no analysis."""
  mem = compiled.memory_analysis()
  if mem is None:
    return None
  return (mem.argument_size_in_bytes + mem.temp_size_in_bytes + mem.output_size_in_bytes
          - mem.alias_size_in_bytes)


def device_bytes(device=None) -> int | None:
  """The memory XLA may allocate on `device` (None where unbounded or unknown, e.g. CPUs)."""
  stats = (device or jax.devices()[0]).memory_stats() or {}
  return stats.get("bytes_limit")


def fits(need: int | None, limit: int | None) -> bool:
  return need is None or limit is None or need <= limit
