"""`python -m benchmarks.report` runs end to end at tiny size without PyTorch, and its report is complete.

One subprocess with torch, diffusers and transformers refused at import (the GPU machines have
none of our pinned stack): it must still write report.json with every section, every figure
positive and finite (no timing is asserted), and the markdown beside it. XLA's backend
optimisation is off (XLA_FLAGS) and the train step is configs/tiny.py's one-level variant
(`--one_level`) only to shorten the compiles.
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

from benchmarks.report import SECTIONS, figures

ROOT = Path(__file__).parents[1]

RUN_WITHOUT_TORCH = '''
import importlib.abc, runpy, sys
class _Refuse(importlib.abc.MetaPathFinder):
  def find_spec(self, name, path=None, target=None):
    if name.split(".")[0] in ("torch", "torchvision", "torchaudio", "diffusers", "transformers"):
      raise ModuleNotFoundError(f"No module named {name!r} (refused by the test)", name=name)
    return None
sys.meta_path.insert(0, _Refuse())
sys.argv = ["benchmarks.report", *sys.argv[1:]]
runpy.run_module("benchmarks.report", run_name="__main__", alter_sys=True)
'''

ENVIRONMENT = {"backend", "device_kind", "device_count", "local_device_count", "versions", "xla_flags", "commit"}
TRAIN_ROW = {"batch", "remat", "role", "compile_s", "step_s", "clips_per_s", "gflop_per_step", "xla_peak_gib",
             "fits", "attention", "trainable", "frozen"}
SAMPLING_ROW = {"batch", "dtype", "scheduler", "steps", "audio_guidance", "first_call_s", "s_per_call",
                "s_per_clip", "clips_per_s"}


def run_report(out: Path) -> subprocess.CompletedProcess:
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_backend_optimization_level=0",
             PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p))
  return subprocess.run([sys.executable, "-c", RUN_WITHOUT_TORCH, "--size", "tiny", "--quick", "--out", str(out),
                         "--sampling_steps", "3", "--cpu_devices", "2", "--one_level", "--label", "test"],
                        env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)


def test_tiny_report_without_torch(tmp_path):
  out = tmp_path / "report"
  result = run_report(out)
  assert result.returncode == 0, result.stderr[-3000:]
  report = json.loads((out / "report.json").read_text())

  env = report["environment"]
  assert ENVIRONMENT <= set(env), set(env)
  assert env["versions"]["torch"] is None and env["versions"]["jax"]  # torch refused, and the report knows
  assert env["xla_flags"] == "--xla_backend_optimization_level=0"
  for section in SECTIONS:
    assert section in report, (section, report["skipped"])

  assert report["train"]["size"] == "tiny:one_level"
  (train,) = report["train"]["rows"]  # --quick: batch 4, remat none
  assert TRAIN_ROW <= set(train), set(train)
  assert (train["batch"], train["remat"], train["fits"], train["attention"]) == (4, "none", True, "xla")
  assert "mfu" not in train or train["mfu"] is None  # a CPU has no peak to compare with

  (sampling,) = report["sampling"]["rows"]
  assert SAMPLING_ROW <= set(sampling), set(sampling)
  assert (sampling["batch"], sampling["scheduler"], sampling["steps"]) == (1, "pndm", 3)

  assert {r["network"] for r in report["evaluation"]["rows"]} == {"avsync", "imagebind_vision"}

  parallel = report["parallel"]
  assert parallel["simulated"] and [r["devices"] for r in parallel["rows"]] == [1, 2]
  assert [p["devices"] for p in parallel["protocol"]] == [1, 2]
  assert all(p["clips"] == 450 for p in parallel["protocol"])  # AVSync15: 150 test videos x 3 clips
  assert {c["kind"] for c in report["compile"]} == {"lower + compile", "first call (compile + one run)"}

  numbers = dict(figures(report))
  assert len(numbers) > 40
  bad = {p: v for p, v in numbers.items() if not (math.isfinite(v) and v > 0)}
  assert not bad and "not_positive" not in report, bad

  markdown = (out / "report.md").read_text()
  for title in ("## Training step", "## Sampling, whole", "## Evaluation networks", "## Sampling on 1 and N",
                "## Compile times"):
    assert title in markdown


def test_largest_fitting_batch_search_matches_brute_force():
  """tpu_compile --search's batch search against trying every batch (each probe is a compilation
  there, so it must also be frugal)."""
  from benchmarks.tpu_compile import largest_fitting

  cases = [(lambda b: 5 + 3 * b, 100), (lambda b: 5 + 3 * b, 7), (lambda b: 5 + 3 * b, 500),
           (lambda b: 5 + b * b, 40), (lambda b: None if b > 10 else 5 + b * b, 1000), (lambda b: 20, 10)]
  for need, limit in cases:
    probed = []
    best, needs = largest_fitting(lambda b: probed.append(b) or need(b), limit, 64)
    expected = max([b for b in range(1, 65) if need(b) is not None and need(b) <= limit], default=0)
    assert best == expected, (limit, best, expected, probed)
    assert needs == {b: need(b) for b in probed} and len(probed) <= 10
  probed = []
  largest_fitting(lambda b: probed.append(b) or 5 + 3 * b, 100, 64)
  assert probed == [1, 2, 31, 32]  # linear need: two probes, the prediction, and one past it


def test_a_row_xla_cannot_run_is_skipped_with_its_error_and_the_rest_runs(monkeypatch):
  """On a GPU window one out-of-memory row must not cost the whole report: the train rows go on,
  the failed one is listed with XLA's message, and the budget's order is kept."""
  import jax

  from benchmarks import report_train
  from benchmarks.report_budget import Budget

  def one(size, batch, remat, steps):
    if (batch, remat) == (16, "none"):
      raise jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 90 GiB\nmore")
    return {"batch": batch, "remat": remat, "compile_s": 1.0}, True

  monkeypatch.setattr(report_train, "one", one)
  section = Budget(3600, {"train": 1}).section("train")
  rows, skipped = report_train.rows("full", report_train.order([4, 16], ["none", "best", "full"]), 1, section)
  assert [(r["batch"], r["remat"], r["role"]) for r in rows] == [
      (4, "dots_saveable", "best policy"), (4, "full", "full"), (4, "none", "none"),
      (16, "dots_saveable", "best policy"), (16, "full", "full")]
  assert skipped == [{"batch": 16, "remat": "none", "reason": "failed: JaxRuntimeError: RESOURCE_EXHAUSTED: Out "
                                                             "of memory while trying to allocate 90 GiB"}]
