"""FLOPs of a step, counted independently of the platform that runs it.

XLA's cost analysis of a *compiled* GPU program leaves out the convolutions that
cuDNN runs (measured: 625 GFLOP reported for a full-size UNet forward that costs
2,516). We count instead on the lowered, not yet optimised HLO
(`jit(f).lower(...).cost_analysis()`: XLA's HloCostAnalysis before any backend
pass), which is the same on every platform; the source string says so.
"""

from __future__ import annotations

import jax

SOURCE = "XLA HloCostAnalysis of the lowered (unoptimised, platform-independent) HLO"

# Dense bf16 peak FLOP/s per chip, for MFU.
PEAK_FLOPS = {
    "H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12,
    "TPU v4": 275e12, "TPU v5 lite": 197e12, "TPU v5e": 197e12, "TPU v5p": 459e12, "TPU v5": 459e12,
    "TPU v6 lite": 918e12, "TPU v6e": 918e12,
}


def lowered_flops(lowered) -> float | None:
  """FLOPs of a `jax.stages.Lowered` (None when XLA gives no count)."""
  try:
    cost = lowered.cost_analysis()
  except Exception:  # some backends cannot analyse
    return None
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else None
  flops = (cost or {}).get("flops")
  return float(flops) if flops and flops > 0 else None


def peak_flops(device=None) -> float | None:
  """Peak bf16 FLOP/s of a device from its kind, None when unknown (e.g. CPUs)."""
  kind = (device or jax.devices()[0]).device_kind
  for name, flops in sorted(PEAK_FLOPS.items(), key=lambda kv: -len(kv[0])):
    if name.lower() in kind.lower():
      return flops
  return None
