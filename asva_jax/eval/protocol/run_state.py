"""What makes a protocol run resumable: the settings its clips were made with, and which clips exist.

A clip is done when its mp4 exists: the sampler writes each one to a temporary name and renames it
(`asva_jax.media.mp4.write_mp4`), so a killed run leaves whole clips or none. The settings are
recorded in the output folder before the first clip is written; a rerun with other settings
(another guidance, checkpoint step, sampler, ...) refuses instead of mixing clips of two runs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from asva_jax.errors import AsvaError
from asva_jax.eval.metrics import generated_clip_name

SETTINGS_FILE = "protocol_settings.json"
VIDEOS = "videos"


class ProtocolError(AsvaError, ValueError):
  """A protocol run that cannot start or continue: bad flags, or an output folder of other settings."""


def read_settings(out: str | os.PathLike) -> dict | None:
  path = Path(out) / SETTINGS_FILE
  if not path.is_file():
    return None
  try:
    return json.loads(path.read_text())
  except json.JSONDecodeError as e:
    raise ProtocolError(f"{path}: not valid JSON ({e}); it records the settings of the clips in "
                        f"{Path(out) / VIDEOS}: restore it, or choose another --out") from e


def check_settings(out: str | os.PathLike, settings: dict) -> None:
  """Records `settings` in a new output folder, or checks that they are those of its clips."""
  path = Path(out) / SETTINGS_FILE
  recorded = read_settings(out)
  if recorded is None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # hosts of one run may write it together
    tmp.write_text(json.dumps(settings, indent=2) + "\n")
    os.replace(tmp, path)
    return
  differ = [k for k in sorted(set(settings) | set(recorded)) if settings.get(k) != recorded.get(k)]
  if differ:
    k = differ[0]
    raise ProtocolError(f"--out {out}: its clips were made with {k}={recorded.get(k)!r}, this run has "
                        f"{k}={settings.get(k)!r} ({len(differ)} setting(s) differ, see {path}); "
                        f"rerun with the same settings to continue it, or choose another --out")


def clip_paths(out: str | os.PathLike, key: str, num_clips: int) -> list[Path]:
  """The files of a test video's clips: OUT/videos/<class>/<name>_clip-NN.mp4, as the evaluation pairs them."""
  return [Path(out) / VIDEOS / generated_clip_name(key, k) for k in range(num_clips)]
