"""Every command keeps the bad-input contract on the corpus of tests/bad_input_cases.py.

All cases start at once (a small process pool) when the first one is checked; each test
then checks one case's result. Commands run with a temporary folder as the working
directory; the repository root is put on PYTHONPATH only when the installed packages are
not this checkout (e.g. a shared virtual environment installed from another clone).
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bad_input_cases import CASES, DATA, PAYLOAD_TARGET, REPO, Case
from tests.gcs_emulator import gcs_emulator

WORKERS = 3
TIMEOUT_S = 240


def _installed_here() -> bool:
  """Whether `convert`, `data_prep` and `asva_jax` import from this checkout without PYTHONPATH."""
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  probe = "import asva_jax, convert, data_prep; print(asva_jax.__file__, convert.__file__, data_prep.__file__)"
  result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd="/",
                          env=env, timeout=60)
  return result.returncode == 0 and all(Path(p).resolve().is_relative_to(REPO)
                                        for p in result.stdout.split())


def _tree(root: Path) -> set[str]:
  return {str(p.relative_to(root)) for p in root.rglob("*")}


def _run(case: Case, tmp: Path, env: dict) -> dict:
  fill = lambda s: s.replace("{tmp}", str(tmp)).replace("{data}", str(DATA)).replace("{repo}", str(REPO))
  if case.setup is not None:
    case.setup(tmp)
  before = _tree(tmp)
  result = subprocess.run([sys.executable] + [fill(a) for a in case.argv], cwd=tmp, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT_S)
  return {"returncode": result.returncode, "stderr": result.stderr, "stdout": result.stdout,
          "before": before, "after": _tree(tmp), "expect": [fill(e) for e in case.expect]}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
  env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ASVA_VERBOSE")}
  if not _installed_here():
    env["PYTHONPATH"] = str(REPO)
  env["JAX_PLATFORMS"] = "cpu"
  with gcs_emulator() as gcs_env, cf.ThreadPoolExecutor(WORKERS) as pool:  # for the gs:// cases
    env.update(gcs_env)
    futures = {c.name: pool.submit(_run, c, tmp_path_factory.mktemp(c.name), env) for c in CASES}
    return {name: f.result() for name, f in futures.items()}


def test_case_names_are_unique():
  names = [c.name for c in CASES]
  assert len(names) == len(set(names))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case, results):
  r = results[case.name]
  report = f"exit {r['returncode']}\nstdout:\n{r['stdout'][-1500:]}\nstderr:\n{r['stderr'][-3000:]}"
  assert r["returncode"] == case.exit_code, report
  assert "Traceback" not in r["stderr"], report
  assert r["stderr"].count("error: ") == 1, report
  for text in r["expect"]:
    assert text in r["stderr"], f"{text!r} not named\n{report}"
  created = {p for p in r["after"] - r["before"]
             if not any(p == keep or p.startswith(keep + os.sep) for keep in case.may_create)}
  assert not created, f"left behind: {sorted(created)}\n{report}"
  assert not [p for p in r["after"] if ".tmp" in Path(p).name], f"temporary files left: {report}"
  assert PAYLOAD_TARGET not in r["after"], "a pickled payload ran"
