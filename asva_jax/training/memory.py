"""What a compiled step needs on a device, and which remat setting fits: XLA's own memory analysis.

Used to choose the rematerialisation ("the fastest setting that fits") without running
anything: `fits` compares the compiled program's need with the device's memory, and
`choose_remat` is the trainer's `remat = "auto"`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax

from asva_jax.errors import AsvaError

# The checkpoint policies between remat "none" and "full", fastest first: save every matmul
# output; save only the matmuls without batch dimensions (weights by activations).
REMAT_POLICIES = ("dots_saveable", "dots_with_no_batch_dims_saveable")
# What remat "auto" tries, fastest (most memory) first.
AUTO_ORDER = ("none", *REMAT_POLICIES, "full")
# The share of the device's limit that "auto" leaves free: XLA's analysis counts the program's
# own buffers, not the allocator's fragmentation, cuDNN/cuBLAS workspaces or the next batch
# being placed while a step runs.
FIT_MARGIN = 0.05


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


def gib(n: int) -> str:
  return f"{n / 2**30:.2f} GiB"


@dataclasses.dataclass
class RematChoice:
  """What `choose_remat` compiled: the setting, its need, the device's limit, and the settings
  tried before it with their needs (None: XLA refused to compile it, out of memory)."""
  remat: str
  need: int | None
  limit: int | None                       # the device's bytes_limit (None: no limit known)
  tried: list[tuple[str, int | None]] = dataclasses.field(default_factory=list)

  @property
  def usable(self) -> int | None:
    return None if self.limit is None else int(self.limit * (1 - FIT_MARGIN))

  def reason(self) -> str:
    """Why, in a few words: each setting's need against the usable part of the limit."""
    if self.limit is None:
      return f"auto: no memory limit on {jax.devices()[0].platform} devices, so none, compiled once"
    needs = ", ".join(f"{name} needs {gib(need) if need is not None else 'more (XLA: out of memory)'}"
                      for name, need in self.tried)
    this = f"{self.remat} needs {gib(self.need)}" if self.need is not None else f"{self.remat} (no analysis)"
    return (f"auto: {needs + ', ' if needs else ''}{this}; the limit is {gib(self.usable)} "
            f"({100 * (1 - FIT_MARGIN):g} % of the device's {gib(self.limit)})")

  def record(self) -> dict:
    return {"remat": self.remat, "need_bytes": self.need, "limit_bytes": self.limit,
            "usable_bytes": self.usable, "tried": [{"remat": n, "need_bytes": b} for n, b in self.tried]}


def out_of_memory(error: Exception) -> bool:
  return "RESOURCE_EXHAUSTED" in str(error)


def choose_remat(compile_with: Callable[[str], Any], limit: int | None) -> tuple[Any, RematChoice]:
  """(compiled, choice): the first of AUTO_ORDER whose compiled step (`compile_with(setting)`) fits
  the usable part of `limit` (the device's bytes_limit less FIT_MARGIN). No limit (CPUs): "none",
  compiled once. Nothing fits: an AsvaError with the smallest need, naming what to change."""
  if limit is None:
    compiled = compile_with("none")
    return compiled, RematChoice("none", peak_bytes(compiled), None)
  usable = RematChoice("none", None, limit).usable
  tried = []
  for name in AUTO_ORDER:
    try:
      compiled = compile_with(name)
    except jax.errors.JaxRuntimeError as e:  # TPUs refuse to compile what does not fit
      if not out_of_memory(e):
        raise
      tried.append((name, None))
      continue
    need = peak_bytes(compiled)
    if fits(need, usable):
      return compiled, RematChoice(name, need, limit, tried)
    del compiled
    tried.append((name, need))
  known = [(need, name) for name, need in tried if need is not None]
  smallest = (f"the smallest need, remat {min(known)[1]}'s, is {gib(min(known)[0])}" if known
              else "XLA ran out of memory compiling each")
  raise AsvaError(f"--config.remat=auto: no remat setting ({', '.join(AUTO_ORDER)}) fits the device: "
                  f"{smallest}, over the limit of {gib(usable)} ({100 * (1 - FIT_MARGIN):g} % of the "
                  f"device's {gib(limit)}); use a smaller --config.train.batch_size (or a larger "
                  f"train.grad_accum) or shard the state over more devices (--config.mesh.fsdp)")
