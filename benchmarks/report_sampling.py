r"""The report's sampling rows, and sampling on 1 and N devices with the protocol's wall time.

Seconds per clip of the whole `pipeline.sample` call (image encode, ImageBind tokens, the
sampler's UNet calls with audio guidance 4, VAE decode), random weights of benchmarks.sampling's
sizes. Data-parallel figures: one `pipeline.sample` call split over a `data` mesh of N devices
(weights replicated), timed against one device in the same process. On a CPU the N devices are
simulated (`--xla_force_host_platform_device_count`) in a subprocess:

    XLA_FLAGS=--xla_force_host_platform_device_count=4 python -m benchmarks.report_sampling \
        --size tiny --batch 1 --steps 50 --out dp.json
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp

from benchmarks.report_budget import SKIPPED_BY_BUDGET, runtime_failure

AUDIO_GUIDANCE = 4.0
REPO = Path(__file__).resolve().parent.parent


def timed(fn, runs: int) -> tuple[float, float]:
  """(first call's seconds, median of `runs` further calls)."""
  start = time.perf_counter()
  fn()
  first = time.perf_counter() - start
  times = []
  for _ in range(runs):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return first, statistics.median(times)


def sample_call(models, clips, scheduler: str, steps: int, mesh=None):
  from asva_jax.pipeline import sample
  return lambda: sample(models, clips, num_inference_steps=steps, audio_guidance=AUDIO_GUIDANCE,
                        scheduler=scheduler, mesh=mesh)


def row(size: str, batch: int, dtype: str, scheduler: str, steps: int, runs: int, models=None) -> dict:
  from benchmarks.sampling import build, clips
  models = models or build(size, jnp.dtype(dtype))
  first, t = timed(sample_call(models, clips(size, batch), scheduler, steps), runs)
  return {"size": size, "batch": batch, "dtype": dtype, "scheduler": scheduler, "steps": steps,
          "audio_guidance": AUDIO_GUIDANCE, "first_call_s": first, "s_per_call": t, "s_per_clip": t / batch,
          "clips_per_s": batch / t}


def plan(batches, dtypes, default_dtype: str, steps_pndm: int, steps_dpm: int | None) -> list[tuple]:
  """(batch, dtype, scheduler, steps), most wanted first: PNDM in the default dtype (the targets'
  figures), DPM-Solver++ in it, then PNDM in the other dtype (one rebuild of the models)."""
  batches = sorted(set(batches))
  out = [(b, default_dtype, "pndm", steps_pndm) for b in batches]
  out += [(b, default_dtype, "dpm++2m", steps_dpm) for b in batches] if steps_dpm else []
  return out + [(b, d, "pndm", steps_pndm) for d in dtypes if d != default_dtype for b in batches]


def rows(size: str, items, runs: int, section) -> tuple[list[dict], list[dict]]:
  from benchmarks.sampling import build
  out, skipped, models = [], [], {}
  for batch, dtype, scheduler, steps in items:  # models rebuilt only when the dtype changes
    if not section.allows():
      skipped.append({"batch": batch, "dtype": dtype, "scheduler": scheduler, "reason": SKIPPED_BY_BUDGET})
      continue
    if dtype not in models:
      models = {dtype: build(size, jnp.dtype(dtype))}  # one dtype's models in memory at a time
    try:
      out.append(section.run(row, size, batch, dtype, scheduler, steps, runs, models[dtype]))
    except jax.errors.JaxRuntimeError as e:
      skipped.append({"batch": batch, "dtype": dtype, "scheduler": scheduler, "reason": runtime_failure(e)})
  return sorted(out, key=lambda r: (r["scheduler"] != "pndm", r["dtype"], r["batch"])), skipped


def parallel_clips_per_s(size: str, dtype: str, per_device: int, steps: int, runs: int, devices) -> dict:
  """Clips/s of one `pipeline.sample` call of `per_device` clips per device, split over `devices` (a
  `data` mesh, weights replicated: the data-parallel sampler of `python -m asva_jax.sample --jobs`)."""
  from asva_jax.parallel import sharding
  from benchmarks.sampling import build, clips
  mesh = sharding.data_mesh(devices)
  models = build(size, jnp.dtype(dtype))
  n = per_device * len(devices)
  first, t = timed(sample_call(models, clips(size, n), "pndm", steps, mesh=mesh), runs)
  return {"devices": len(devices), "clips": n, "first_call_s": first, "s_per_call": t, "clips_per_s": n / t}


def parallel(size: str, dtype: str, per_device: int, steps: int, runs: int) -> dict:
  """1 device against all local devices, measured in this process."""
  devices = jax.local_devices()
  rows = [parallel_clips_per_s(size, dtype, per_device, steps, runs, devices[:1])]
  if len(devices) > 1:
    rows.append(parallel_clips_per_s(size, dtype, per_device, steps, runs, devices))
  return {"size": size, "dtype": dtype, "scheduler": "pndm", "steps": steps, "per_device_batch": per_device,
          "device_kind": devices[0].device_kind, "simulated": False, "rows": rows,
          "method": "pipeline.sample with the clips split over a data mesh of the devices, weights replicated "
                    "(asva_jax.parallel.sharding.data_mesh)"}


def single_device(row: dict) -> dict:
  """`parallel`'s result from a sampling row, where there is one device only."""
  return {"size": row["size"], "dtype": row["dtype"], "scheduler": "pndm", "steps": row["steps"],
          "per_device_batch": row["batch"], "device_kind": jax.devices()[0].device_kind, "simulated": False,
          "method": "one device only: the sampling section's row",
          "rows": [{"devices": 1, "clips": row["batch"], "first_call_s": row["first_call_s"],
                    "s_per_call": row["s_per_call"], "clips_per_s": row["clips_per_s"]}]}


def parallel_simulated(size: str, dtype: str, per_device: int, steps: int, runs: int, devices: int,
                       out: Path, timeout_s: float) -> dict:
  """`parallel` in a subprocess with `devices` simulated CPU devices."""
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}")
  env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
  cmd = [sys.executable, "-m", "benchmarks.report_sampling", "--size", size, "--dtype", dtype,
         "--batch", str(per_device), "--steps", str(steps), "--runs", str(runs), "--out", str(out)]
  subprocess.run(cmd, env=env, check=True, timeout=timeout_s, cwd=REPO)
  result = json.loads(out.read_text())
  out.unlink()
  return dict(result, simulated=True)


def protocol(parallel_result: dict, clips: int, eval_s: float | None) -> list[dict]:
  """Estimated wall time of the protocol's generation (measured clips/s) per device count, plus the
  evaluation's single-device seconds divided by the device count (assumed: it scales linearly)."""
  out = []
  for r in parallel_result["rows"]:
    gen = clips / r["clips_per_s"]
    est = {"devices": r["devices"], "clips": clips, "generation_s": gen, "total_s": gen}
    if eval_s:
      est["evaluation_s"] = eval_s / r["devices"]
      est["total_s"] = gen + est["evaluation_s"]
    out.append(est)
  return out


def main() -> None:
  """`python -m benchmarks.report_sampling`: the `parallel` figures as JSON (run by the report)."""
  import argparse
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--size", default="tiny")
  p.add_argument("--dtype", default="float32")
  p.add_argument("--batch", type=int, default=1, help="clips per device")
  p.add_argument("--steps", type=int, default=50)
  p.add_argument("--runs", type=int, default=1)
  p.add_argument("--out", required=True)
  a = p.parse_args()
  result = parallel(a.size, a.dtype, a.batch, a.steps, a.runs)
  Path(a.out).write_text(json.dumps(result))


if __name__ == "__main__":
  main()
