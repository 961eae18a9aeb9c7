"""The report's training rows: the trainer's optimizer step at several batches and remat settings.

For each batch: remat `none`, `full` and the best policy that fits (the first of
asva_jax.training.memory.REMAT_POLICIES whose compiled step fits the device's memory; on a
CPU, where memory is not bounded, the first). A setting whose compiled step needs more than
the device holds is recorded with its need and not run. The step comes from
benchmarks.train_step (which builds it with the trainer's own asva_jax.training.program).
"""

from __future__ import annotations

import gc

import jax

from benchmarks.report_budget import SKIPPED_BY_BUDGET, runtime_failure


def fit_row(row: dict) -> dict:
  """`row` with `fits` and the device's memory, from XLA's need and the device's limit."""
  from asva_jax.training.memory import device_bytes, fits
  limit = device_bytes()
  need = row.get("xla_peak_gib")
  row = dict(row, fits=fits(None if need is None else need * 2**30, limit))
  if limit:
    row["device_gib"] = limit / 2**30
  return row


def one(size: str, batch: int, remat: str, steps: int) -> tuple[dict, bool]:
  """(row, ran): compiled, and timed when it fits."""
  from benchmarks.train_step import compile_step, sized_config, time_step
  config, frame_size = sized_config(size)
  compiled, args, row = compile_step(config, frame_size, batch, remat)
  row = fit_row(row)
  row.update(size=size, compute=config.precision.compute)  # size may name a variant: tiny:one_level
  if row["fits"]:
    row = time_step(compiled, args, row, steps)
  del compiled, args
  gc.collect()
  return row, row["fits"]


def best_policy(size: str, batch: int, steps: int, section) -> dict | None:
  """The row of the first policy that fits (tried in order; each try is a compilation)."""
  from asva_jax.training.memory import REMAT_POLICIES
  tried = []
  for policy in REMAT_POLICIES:
    if not section.allows():
      break
    row, ran = section.run(one, size, batch, policy, steps)
    tried.append(policy)
    if ran:
      return dict(row, role="best policy", tried=tried)
  return None


def order(batches, remats) -> list[tuple[int, str]]:
  """(batch, remat) pairs, most wanted first: every setting at the largest batch (the MFU target's
  16 clips), then the best policy at the other batches, then the rest."""
  top, rest = max(batches), sorted(batches, reverse=True)[1:]
  first = [(top, r) for r in remats] + [(b, "best") for b in rest if "best" in remats]
  return first + [(b, r) for b in rest for r in remats if r != "best"]


def rows(size: str, pairs, steps: int, section) -> tuple[list[dict], list[dict]]:
  """(rows, skipped): one row per (batch, remat) where remat is none, full or "best"."""
  out, skipped = [], []
  for batch, remat in pairs:
    if not section.allows():
      skipped.append({"batch": batch, "remat": remat, "reason": SKIPPED_BY_BUDGET})
      continue
    try:
      row = measure(size, batch, remat, steps, section)
    except jax.errors.JaxRuntimeError as e:
      skipped.append({"batch": batch, "remat": remat, "reason": runtime_failure(e)})
      continue
    if row is None:
      skipped.append({"batch": batch, "remat": "best", "reason": "no remat policy fits, or the budget ended"})
    else:
      out.append(row)
  return sorted(out, key=lambda r: (r["batch"], r["role"])), skipped


def measure(size: str, batch: int, remat: str, steps: int, section) -> dict | None:
  """The row of one (batch, remat) setting; None where no policy fits ("best")."""
  if remat == "best":
    return best_policy(size, batch, steps, section)
  row, _ = section.run(one, size, batch, remat, steps)
  return dict(row, role=remat)


def device_peak_note() -> str:
  from asva_jax.training.flops import peak_flops
  peak = peak_flops()
  kind = jax.devices()[0].device_kind
  return f"{kind}: {peak / 1e12:.0f} TFLOP/s dense bf16" if peak else f"{kind}: no known peak (no MFU)"
