"""The Colab notebook runs top to bottom (nbclient) against the tiny checkpoint, through an
override of its parameters cell, so it cannot rot."""

from pathlib import Path

import nbformat
from nbclient import NotebookClient

from tests.sampling_checkpoint import media, tiny_checkpoint

ROOT = Path(__file__).parents[1]
NOTEBOOK = ROOT / "notebooks" / "colab_sampling.ipynb"


def test_notebook_runs(tmp_path):
  files = media(2.0)
  nb = nbformat.read(NOTEBOOK, as_version=4)
  index = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
  overrides = dict(REPO_URL="", REPO_DIR=str(ROOT), INSTALL=False, MOUNT_DRIVE=False, CKPT=str(tiny_checkpoint()),
                   IMAGE=str(files["image"]), AUDIO=str(files["audio"]), CATEGORY="lions roaring",
                   OUT=str(tmp_path / "out.mp4"), STEPS=2, SIZE=(32, 32))
  nb.cells.insert(index + 1, nbformat.v4.new_code_cell("\n".join(f"{k} = {v!r}" for k, v in overrides.items())))
  NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
  assert (tmp_path / "out.mp4").stat().st_size > 0
  outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
  assert not [o for o in outputs if o.get("output_type") == "error"]
  assert "<video" in outputs[-1]["data"]["text/html"]
