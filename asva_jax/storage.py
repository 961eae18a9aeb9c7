"""Where a run's files live: a local folder or a `gs://` bucket, through one path type.

Every file of a run (checkpoints, run.json, config.json, metrics.jsonl, TensorBoard events,
text encodings, synthetic data) goes through `etils.epath.Path`, the type Orbax writes
checkpoints through; `gs://` goes through gcsfs. GCS differs from a disk in ways the code
must respect:
  - objects are immutable and `open(..., "a")` silently overwrites: `AppendOnlyFile`;
  - an object is replaced atomically, a folder cannot be renamed: `write_bytes_atomic`;
  - a folder does not exist until something is written in it;
  - tools that need a local file system (ArrayRecordWriter, the video decoder) work in a
    local copy that is uploaded afterwards: `staged`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from typing import Any
from pathlib import Path

import fsspec.config
from etils import epath

from asva_jax.errors import AsvaError


# gcsfs caches folder listings forever by default; Orbax writes through tensorstore and other
# hosts write too, so a cached listing would hide new checkpoint steps. Every listing asks GCS.
fsspec.config.conf.setdefault("gs", {}).setdefault("use_listings_cache", False)


class StorageError(AsvaError, OSError):
  """A `gs://` location that cannot be used (no such bucket, no access)."""


def is_remote(path: str | os.PathLike) -> bool:
  return "://" in os.fspath(path)


def as_path(path: str | os.PathLike) -> epath.Path:
  """A local path (made absolute) or a `gs://` URL, as the one path type of the project."""
  text = os.fspath(path)
  return epath.Path(text if is_remote(text) else os.path.abspath(text))


def check_bucket(path: str | os.PathLike, what: str) -> None:
  """Refuses a `gs://` path whose bucket does not exist or cannot be reached, before anything is written.

  `what` names the flag in the message (e.g. "--workdir").
  """
  text = os.fspath(path)
  if not is_remote(text):
    return
  scheme, rest = text.split("://", 1)
  bucket = f"{scheme}://{rest.split('/', 1)[0]}"
  try:
    found = epath.Path(bucket).exists()
  except Exception as e:  # gcsfs raises many types for refused credentials or an unreachable server
    raise StorageError(f"{what} {text}: cannot reach {bucket} ({type(e).__name__}: {str(e)[:200]})") from e
  if not found:
    raise StorageError(f"{what} {text}: the bucket {bucket} does not exist (create it first, e.g. "
                       f"gcloud storage buckets create {bucket})")


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
  """Readers see the old content or the new, never a part: a rename on disk, one upload on GCS."""
  path = as_path(path)
  if is_remote(path):
    path.write_bytes(data)
    return
  local = Path(os.fspath(path))
  local.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=local.name + ".", suffix=".tmp", dir=local.parent)
  with os.fdopen(fd, "wb") as f:
    f.write(data)
  os.chmod(tmp, umasked(0o666))
  os.replace(tmp, local)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
  """Indented, sorted keys, newline-terminated; atomic as `write_bytes_atomic`."""
  write_bytes_atomic(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def write_text_atomic(path: str | os.PathLike, lines: list[str]) -> None:
  """One line per item, each newline-terminated; atomic as `write_bytes_atomic`."""
  write_bytes_atomic(path, "".join(line + "\n" for line in lines).encode())


def umasked(mode: int) -> int:
  """`mode` under the process umask: temporary files and folders are private until renamed."""
  mask = os.umask(0)
  os.umask(mask)
  return mode & ~mask


class AppendOnlyFile:
  """A log that only grows. On disk: appends. On GCS (no appends): the object is rewritten whole
  at each write from this writer's copy of it, so readers always see a complete older or newer log.

  Each write ends with a newline-terminated record; a record cut off by a crash on disk is
  closed with a newline before the next writer appends, so the next record stays whole.
  """

  def __init__(self, path: str | os.PathLike):
    self.path = as_path(path)
    self._remote = is_remote(self.path)
    if self._remote:
      self._content = self.path.read_bytes() if self.path.exists() else b""
      self._file = None
    else:
      local = Path(os.fspath(self.path))
      local.parent.mkdir(parents=True, exist_ok=True)
      self._file = open(local, "ab")
      if self._file.tell() and not local.read_bytes().endswith(b"\n"):
        self._file.write(b"\n")

  def write(self, data: bytes) -> None:
    if self._remote:
      self._content += data
      self.path.write_bytes(self._content)
    else:
      self._file.write(data)
      self._file.flush()

  def close(self) -> None:
    if self._file is not None:
      self._file.close()


def _files(folder: epath.Path) -> Iterator[epath.Path]:
  """Every file under `folder` (epath refuses `**` globs on GCS)."""
  for entry in folder.iterdir():
    if entry.is_dir():
      yield from _files(entry)
    else:
      yield entry


def _download(remote: epath.Path, local: Path, fetch: Callable[[str], bool]) -> dict[str, bytes]:
  fetched = {}
  if not remote.exists():
    return fetched
  for file in _files(remote):
    relative = os.path.relpath(os.fspath(file), os.fspath(remote))
    if not fetch(relative):
      continue
    data = file.read_bytes()
    (local / relative).parent.mkdir(parents=True, exist_ok=True)
    (local / relative).write_bytes(data)
    fetched[relative] = data
  return fetched


def upload_tree(local: str | os.PathLike, remote: str | os.PathLike,
                unchanged: dict[str, bytes] | None = None) -> None:
  """Copies every file under `local` to `remote` (except those whose bytes are in `unchanged`)."""
  local, remote = Path(local), as_path(remote)
  unchanged = unchanged or {}
  for file in sorted(p for p in local.rglob("*") if p.is_file()):
    relative = file.relative_to(local).as_posix()
    data = file.read_bytes()
    if unchanged.get(relative) != data:
      (remote / relative).write_bytes(data)


@contextlib.contextmanager
def staged(folder: str | os.PathLike, *, fetch: Callable[[str], bool] = lambda relative: True
           ) -> Iterator[Path]:
  """A local folder standing for `folder`: the folder itself when local. For `gs://`: a temporary
  copy of the files whose relative path `fetch` accepts; when the block ends without an error,
  its new and changed files are uploaded (nothing remote is deleted)."""
  if not is_remote(folder):
    local = Path(os.fspath(as_path(folder)))
    local.mkdir(parents=True, exist_ok=True)
    yield local
    return
  tmp = Path(tempfile.mkdtemp(prefix="asva-staged."))
  try:
    fetched = _download(as_path(folder), tmp, fetch)
    yield tmp
    upload_tree(tmp, folder, unchanged=fetched)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
