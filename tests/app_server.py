"""`python -m asva_jax.app` started as a real server on 127.0.0.1 (a free port) for the app tests."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).parents[1]
# The page's defaults, hence what the start-up compiles: small, so the tests stay fast.
FAST = ["--scheduler=ddim", "--steps=2", "--audio_guidance=4.0", "--text_guidance=1.0"]


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@contextlib.contextmanager
def serve(ckpt, log: Path, *args: str, timeout: float = 300):
  """Yields the URL once the server listens; stops it (SIGTERM, then SIGKILL) afterwards."""
  port = free_port()
  env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
  with open(log, "w") as out:
    proc = subprocess.Popen([sys.executable, "-m", "asva_jax.app", f"--ckpt={ckpt}", f"--port={port}", *FAST, *args],
                            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
  url = f"http://127.0.0.1:{port}/"
  try:
    deadline = time.monotonic() + timeout
    while "Running on local URL" not in log.read_text():
      if proc.poll() is not None or time.monotonic() > deadline:
        raise AssertionError(f"the app did not start (exit {proc.poll()}):\n{log.read_text()[-3000:]}")
      time.sleep(0.5)
    yield url, proc
  finally:
    proc.terminate()
    try:
      proc.wait(30)
    except subprocess.TimeoutExpired:
      proc.kill()
      proc.wait()
