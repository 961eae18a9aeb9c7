"""Writing converted components into a JAX checkpoint folder, one atomic sub-folder each."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from asva_jax.storage import umasked


def write_component(root: str | os.PathLike, name: str, write: Callable[[Path], None]) -> Path:
  """Runs `write(tmp_folder)`, then moves the folder to `root/name`, replacing an older one.

  A crash leaves either the old component or the new one, never a half-written folder.
  """
  root = Path(root)
  root.mkdir(parents=True, exist_ok=True)
  tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=root))
  tmp.chmod(umasked(0o777))
  try:
    write(tmp)
    final = root / name
    old = None
    if final.exists():
      old = Path(tempfile.mkdtemp(prefix=f".{name}.old-", dir=root))
      os.replace(final, old / name)
    os.replace(tmp, final)
    if old is not None:
      shutil.rmtree(old)
    return final
  finally:
    if tmp.exists():
      shutil.rmtree(tmp)
