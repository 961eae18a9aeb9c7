r"""Every speed figure of the project in one run: `report.json` and `report.md`.

    python -m benchmarks.report [--size tiny|medium|full] [--quick] [--out DIR] [--budget_s 480]
        [--sections train,sampling,evaluation,parallel] [--cpu_devices 4]

Runs what fits the backend it finds (default size: `full` on GPU/TPU, `tiny` on CPU) and
records the machine (device, count, jax/jaxlib, XLA flags, git commit):
  * train: the trainer's optimizer step (benchmarks.train_step -> asva_jax.training.program) at
    4, 8 and 16 clips with remat none / full / the best policy that fits: compile time, step
    time, clips/s, FLOPs of the platform-independent HLO, MFU against the device's peak, XLA's
    memory need, the attention kernel it compiled to;
  * sampling: seconds per clip of the whole `pipeline.sample` (decode included) at batch 1 and 8,
    PNDM 50 with audio guidance in float32 and bfloat16, DPM-Solver++ 20;
  * evaluation: items/s of every evaluation network (benchmarks.evaluation);
  * parallel: sampling clips/s on 1 and on all local devices (simulated CPU devices in a
    subprocess on a CPU), and the estimated wall time of the AVSync15 protocol per device count;
  * compile: the compile (or first-call) seconds of every row, apart from the run times.
A part that cannot run here (a missing package, the budget) is listed under `skipped` with the
reason. `--budget_s` bounds the wall time (default 480 s: one H100 must finish in 8 minutes,
compiles included); sections get shares of it, and rows that would overrun are skipped.
Random weights; figures only, no assertions.
"""

from __future__ import annotations

import importlib.util
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file (benchmarks/report.py): make `benchmarks` importable
  sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import jax  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from asva_jax.commands import runner  # noqa: E402
from asva_jax.errors import AsvaError  # noqa: E402
from benchmarks import report_markdown  # noqa: E402
from benchmarks.report_budget import Budget, runtime_failure  # noqa: E402

SECTIONS = ("train", "sampling", "evaluation", "parallel")
SHARES = {"train": 0.5, "sampling": 0.3, "evaluation": 0.1, "parallel": 0.1}
REPO = Path(__file__).resolve().parent.parent
OPTIONAL = ("torch", "diffusers", "transformers", "ml_collections", "tqdm")


def define_flags(fv: flags.FlagValues = flags.FLAGS) -> None:
  flags.DEFINE_enum("size", None, ["tiny", "medium", "full"],
                    "model sizes; default: full on GPU/TPU, tiny on CPU", flag_values=fv)
  flags.DEFINE_bool("quick", False, "a first look: batch 4 / 1 only, fewer rows and repeats", flag_values=fv)
  flags.DEFINE_string("out", "benchmark_report", "folder for report.json and report.md (must not hold a "
                      "report yet)", flag_values=fv)
  flags.DEFINE_float("budget_s", 480.0, "wall-clock budget of the whole run, seconds", flag_values=fv)
  flags.DEFINE_list("sections", list(SECTIONS), f"which parts to run: {', '.join(SECTIONS)}", flag_values=fv)
  flags.DEFINE_integer("cpu_devices", 4, "simulated devices for the parallel figures on a CPU", flag_values=fv)
  flags.DEFINE_integer("steps", None, "timed optimizer steps per row (default 5, --quick 2)", flag_values=fv)
  flags.DEFINE_integer("runs", 1, "timed repeats per sampling row after the first call", flag_values=fv)
  flags.DEFINE_integer("sampling_steps", 50, "PNDM steps (the protocol's 50; fewer only for tests)",
                       flag_values=fv)
  flags.DEFINE_bool("one_level", False, "with --size tiny: the train step of configs/tiny.py:one_level (one "
                    "UNet level; compiles in about a third of the time; for tests)", flag_values=fv)
  flags.DEFINE_string("label", "", "what to say about the machine (e.g. 'loaded 2-core CPU')", flag_values=fv)


def git_commit() -> str:
  try:
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10)
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True, timeout=10)
  except (OSError, subprocess.TimeoutExpired):
    return "unknown (no git)"
  if head.returncode:
    return "unknown (not a git checkout)"
  return head.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")


def importable(name: str) -> bool:
  try:
    return importlib.util.find_spec(name) is not None
  except (ImportError, ValueError):  # absent, or refused by an import hook
    return False


def package_versions() -> dict:
  """Versions of the packages that matter; None for an optional one that cannot be imported here."""
  from importlib import metadata
  out = {}
  for name in ("jax", "jaxlib", "flax", "optax", "numpy") + OPTIONAL:
    try:
      out[name] = metadata.version(name.replace("_", "-")) if importable(name) else None
    except metadata.PackageNotFoundError:
      out[name] = None
  return out


def environment(label: str) -> dict:
  d = jax.devices()[0]
  from asva_jax.training.flops import peak_flops
  peak = peak_flops()
  env = {"backend": jax.default_backend(), "device_kind": d.device_kind, "device_count": jax.device_count(),
         "local_device_count": jax.local_device_count(), "process_count": jax.process_count(),
         "versions": package_versions(), "xla_flags": os.environ.get("XLA_FLAGS", ""),
         "libtpu_init_args": os.environ.get("LIBTPU_INIT_ARGS", ""), "commit": git_commit(),
         "python": platform.python_version(), "host": platform.node(), "cpu_count": os.cpu_count(),
         "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()), "label": label}
  if peak:
    env["peak_tflops"] = peak / 1e12
  return env


def settings(size: str, quick: bool, fv) -> dict:
  accelerator = jax.default_backend() != "cpu"
  default_dtype = "bfloat16" if accelerator else "float32"
  return {
      "train_size": f"{size}:one_level" if fv.one_level and size == "tiny" else size,
      "train_batches": [4] if quick else [4, 8, 16],
      "remats": ["none"] if quick else ["none", "best", "full"],
      "train_steps": fv.steps or (2 if quick else 5),
      "sampling_batches": [1] if quick else [1, 8],
      "sampling_dtypes": [default_dtype] if quick else ["float32", "bfloat16"],
      "default_dtype": default_dtype,
      "dpm_steps": None if quick else min(20, fv.sampling_steps),
      "eval_sizes": "full" if size == "full" else "tiny",
      "eval_batch": 8 if accelerator and not quick else 2,
      # the ImageBind vision tower's blocks actually built (scaled to its 32): all on an accelerator
      "eval_vision_blocks": None if accelerator else 4,
      # clips per device in the parallel figures: the batch that gives the most clips/s
      "parallel_batch": 8 if accelerator and not quick else 1,
  }


def run_section(name: str, fn, report: dict) -> None:
  """fn() into report[name]; a missing package skips the section with the reason."""
  try:
    fn()
  except ModuleNotFoundError as e:
    report["skipped"].append({"section": name, "reason": f"needs the package {e.name!r}, absent here"})


def train_section(report, size, s, budget):
  from benchmarks import report_train
  size = s["train_size"]
  rows, skipped = report_train.rows(size, report_train.order(s["train_batches"], s["remats"]),
                                    s["train_steps"], budget.section("train"))
  report["train"] = {"size": size, "peak": report_train.device_peak_note(), "rows": rows}
  report["skipped"] += [dict(x, section="train") for x in skipped]


def sampling_section(report, size, s, budget, fv):
  from benchmarks import report_sampling
  items = report_sampling.plan(s["sampling_batches"], s["sampling_dtypes"], s["default_dtype"],
                               fv.sampling_steps, s["dpm_steps"])
  rows, skipped = report_sampling.rows(size, items, fv.runs, budget.section("sampling"))
  report["sampling"] = {"size": size, "rows": rows}
  if not s["dpm_steps"]:
    skipped.append({"scheduler": "dpm++2m", "reason": "--quick"})
  report["skipped"] += [dict(x, section="sampling") for x in skipped]


def evaluation_section(report, size, s, budget, fv):
  from benchmarks import evaluation as E
  from benchmarks.report_budget import SKIPPED_BY_BUDGET
  tiny = s["eval_sizes"] == "tiny"
  names = E.TINY_NETWORKS if tiny else E.NETWORKS
  if fv.quick:
    names = names[:2]
  section = budget.section("evaluation")
  rows = []
  for name in names:
    if not section.allows():
      report["skipped"].append({"section": "evaluation", "network": name, "reason": SKIPPED_BY_BUDGET})
      continue
    start = time.perf_counter()
    try:
      per_item, unit, scale = section.run(E.measure, name, (1, s["eval_batch"]), 1,
                                          s["eval_vision_blocks"], tiny)
    except jax.errors.JaxRuntimeError as e:
      report["skipped"].append({"section": "evaluation", "network": name, "reason": runtime_failure(e)})
      continue
    rows.append({"network": name, "unit": unit, "sizes": "tiny" if tiny else "full",
                 "scaled_from_blocks": 32 / scale if scale != 1.0 else None, "wall_s": time.perf_counter() - start,
                 **{f"items_per_s_b{n}": 1 / t for n, t in per_item.items()}})
  for r in rows:
    if r["scaled_from_blocks"] is None:
      del r["scaled_from_blocks"]
  best = {r["network"]: 1 / max(v for k, v in r.items() if k.startswith("items_per_s_")) for r in rows}
  clips = E.AVSYNC15_TEST_VIDEOS * E.CLIPS_PER_VIDEO
  seconds = E.protocol_seconds(best, clips, E.AVSYNC15_CLASSES)
  report["evaluation"] = {"sizes": "tiny" if tiny else "full", "rows": rows}
  if rows and set(best) == set(E.NETWORKS):
    report["evaluation"]["protocol_s"] = sum(seconds.values())
  elif rows:
    report["evaluation"]["partial_protocol_s"] = sum(seconds.values())
    report["evaluation"]["partial_networks"] = sorted(best)


def parallel_section(report, size, s, budget, fv):
  from benchmarks import evaluation as E
  from benchmarks import report_sampling
  section = budget.section("parallel")
  dtype, per_device = s["default_dtype"], s["parallel_batch"]
  measured = [r for r in report.get("sampling", {}).get("rows", [])
              if (r["dtype"], r["scheduler"], r["batch"], r["steps"]) == (dtype, "pndm", per_device, fv.sampling_steps)]
  if jax.default_backend() != "cpu" and jax.local_device_count() == 1 and measured:
    result = report_sampling.single_device(measured[0])  # one device: the sampling section measured it
  elif not section.allows():
    report["skipped"].append({"section": "parallel", "reason": "not started: the budget was spent"})
    return
  elif jax.default_backend() == "cpu" and jax.local_device_count() == 1:
    with tempfile.TemporaryDirectory() as tmp:
      timeout = max(60.0, section.deadline - time.perf_counter() + 120)
      result = section.run(report_sampling.parallel_simulated, size, dtype, per_device, fv.sampling_steps,
                           fv.runs, fv.cpu_devices, Path(tmp) / "parallel.json", timeout)
  else:
    result = section.run(report_sampling.parallel, size, dtype, per_device, fv.sampling_steps, fv.runs)
  ev = report.get("evaluation", {})
  eval_s = ev.get("protocol_s")
  result["protocol"] = report_sampling.protocol(result, E.AVSYNC15_TEST_VIDEOS * E.CLIPS_PER_VIDEO, eval_s)
  result["protocol_note"] = (
      f"AVSync15: {E.AVSYNC15_TEST_VIDEOS} test videos x {E.CLIPS_PER_VIDEO} clips at this report's size "
      f"({size}); generation from the measured clips/s"
      + ("; evaluation = this report's single-device evaluation seconds / devices (assumed linear)"
         if eval_s else "; evaluation not included (not measured at full size here)"))
  report["parallel"] = result


def compile_summary(report: dict) -> list[dict]:
  out = [{"what": f"train step, batch {r['batch']}, remat {r['remat']}", "seconds": r["compile_s"],
          "kind": "lower + compile"} for r in report.get("train", {}).get("rows", [])]
  out += [{"what": f"sampling {r['scheduler']} {r['steps']}, batch {r['batch']}, {r['dtype']}",
           "seconds": r["first_call_s"], "kind": "first call (compile + one run)"}
          for r in report.get("sampling", {}).get("rows", [])]
  parallel = report.get("parallel", {})
  if parallel.get("method", "").startswith("pipeline.sample"):  # measured there, not a sampling row reused
    out += [{"what": f"sampling pndm {parallel['steps']} on {r['devices']} device(s), {r['clips']} clips",
             "seconds": r["first_call_s"], "kind": "first call (compile + one run)"} for r in parallel["rows"]]
  return out


def figures(tree, path=""):
  """(path, number) of every numeric figure in the report (bools and strings are not figures)."""
  if isinstance(tree, dict):
    for k, v in tree.items():
      yield from figures(v, f"{path}.{k}" if path else k)
  elif isinstance(tree, list):
    for i, v in enumerate(tree):
      yield from figures(v, f"{path}[{i}]")
  elif isinstance(tree, (int, float)) and not isinstance(tree, bool):
    yield path, tree


def check_figures(report: dict) -> list[str]:
  """Paths of figures that are not positive and finite (a broken measurement)."""
  return [p for p, v in figures(report) if not (math.isfinite(v) and v > 0)]


def main(argv, fv: flags.FlagValues = flags.FLAGS):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)
  unknown = sorted(set(fv.sections) - set(SECTIONS))
  if unknown:
    raise AsvaError(f"--sections: unknown {', '.join(unknown)} (expected some of {', '.join(SECTIONS)})")
  out = Path(fv.out)
  for name in ("report.json", "report.md"):
    if (out / name).exists():
      raise AsvaError(f"--out {out}: {name} exists already; choose another folder or remove it")
  size = fv.size or ("tiny" if jax.default_backend() == "cpu" else "full")
  if fv.one_level and size != "tiny":
    raise AsvaError(f"--one_level: only with --size tiny (the size is {size})")
  s = settings(size, fv.quick, fv)
  budget = Budget(fv.budget_s, {k: SHARES[k] for k in SECTIONS if k in fv.sections})
  report = {"schema": 1, "environment": environment(fv.label), "size": size, "quick": fv.quick,
            "budget_s": fv.budget_s, "settings": s, "skipped": []}
  print(f"benchmark report: {report['environment']['device_count']} x {report['environment']['device_kind']}, "
        f"size {size}{' (quick)' if fv.quick else ''}, budget {fv.budget_s:.0f} s", flush=True)
  steps = {"train": lambda: train_section(report, size, s, budget),
           "sampling": lambda: sampling_section(report, size, s, budget, fv),
           "evaluation": lambda: evaluation_section(report, size, s, budget, fv),
           "parallel": lambda: parallel_section(report, size, s, budget, fv)}
  for name in SECTIONS:
    if name in fv.sections:
      t = time.perf_counter()
      run_section(name, steps[name], report)
      print(f"  {name}: {time.perf_counter() - t:.0f} s", flush=True)
  report["compile"] = compile_summary(report)
  report["wall_s"] = budget.elapsed()
  bad = check_figures(report)
  if bad:
    report["not_positive"] = bad
  from asva_jax.storage import write_json_atomic, write_text_atomic
  write_json_atomic(out / "report.json", report)
  write_text_atomic(out / "report.md", report_markdown.render(report))
  print(f"wrote {out / 'report.json'} and {out / 'report.md'} in {report['wall_s']:.0f} s"
        + (f"; figures not positive: {bad}" if bad else ""), flush=True)


if __name__ == "__main__":
  runner.run(main, define_flags=define_flags)
