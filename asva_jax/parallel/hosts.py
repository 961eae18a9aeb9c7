"""Several JAX processes (TPU pod slices, SLURM, several machines): starting them (`jax.distributed`,
with the failure named by the flags that asked for it) and each one's share of independent work."""

from __future__ import annotations

from collections.abc import Sequence

from asva_jax.errors import AsvaError


def share(items: Sequence, index: int | None = None, count: int | None = None) -> list:
  """Process `index`'s contiguous share of `items` out of `count` processes (this process's by
  default): the shares are disjoint, cover every item once, and differ in size by at most one."""
  import jax
  index = jax.process_index() if index is None else index
  count = jax.process_count() if count is None else count
  n = len(items)
  return list(items[index * n // count:(index + 1) * n // count])


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, cpu_collectives: str | None = None,
               auto: bool = False) -> None:
  """`jax.distributed.initialize` when asked (explicit addresses, or `auto` detection); a no-op otherwise."""
  import jax
  if cpu_collectives:
    jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
  explicit = coordinator_address or num_processes
  if not (explicit or auto):
    return
  try:
    if explicit:
      jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                                 process_id=process_id)
    else:
      jax.distributed.initialize()
  except ValueError as e:  # jax found no cluster, or the flags are incomplete
    flag = "--coordinator_address/--num_processes/--process_id" if explicit else "--distributed"
    raise AsvaError(f"{flag}: cannot start the processes ({e}); --distributed detects TPU pods, SLURM and "
                    "other clusters only; elsewhere pass --coordinator_address HOST:PORT --num_processes N "
                    "--process_id I on every host, or drop the flag on one machine") from e
