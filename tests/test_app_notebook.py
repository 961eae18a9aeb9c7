"""The Colab notebook's accelerator check, run with nbclient on this CPU: told the runtime has a GPU
(ACCELERATOR = "gpu") while JAX sees only the CPU, it stops before sampling with a message that says
so and how to fix it, instead of sampling on the CPU. (tests/test_notebook.py runs it on the CPU.)"""

from importlib.metadata import version
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).parents[1]
NOTEBOOK = ROOT / "notebooks" / "colab_sampling.ipynb"


def test_gpu_runtime_without_a_gpu_jax_stops_with_a_clear_message(tmp_path):
  nb = nbformat.read(NOTEBOOK, as_version=4)
  index = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
  overrides = dict(REPO_URL="", REPO_DIR=str(ROOT), INSTALL=False, MOUNT_DRIVE=False, ACCELERATOR="gpu",
                   CKPT=str(tmp_path / "no-checkpoint"), OUT=str(tmp_path / "out.mp4"))
  nb.cells.insert(index + 1, nbformat.v4.new_code_cell("\n".join(f"{k} = {v!r}" for k, v in overrides.items())))
  with pytest.raises(CellExecutionError) as e:
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
  assert "SystemExit" in str(e.value)
  jax = version("jax")  # the installed one is the project's pin
  assert f"This is a GPU runtime, but JAX {jax} sees only [CpuDevice(id=0)]" in str(e.value)
  assert f"jax[cuda12]=={jax}" in str(e.value)
  assert not (tmp_path / "out.mp4").exists()
