"""The original datasets' folder layouts (docs/reference.md §8.1) -> a list of videos with class and prompt.

    avsync15         ROOT/videos/<class>/<name>.mp4, ROOT/{train,test}.txt ("<class>/<name>.mp4"),
                     ROOT/class_mapping.json {class folder: prompt}
    landscapes       ROOT/videos/{train,test}/<class>/<name>.mp4, lists relative to videos/<split>,
                     ROOT/class_mapping.json
    thegreatesthits  ROOT/videos/<name>.mp4 (flat), lists of file names, one prompt
    folder           ROOT/<class>/*.mp4; ROOT/<split>.txt selects videos when present (else all
                     of them); prompts from ROOT/class_mapping.json when present, else the
                     folder name with underscores as spaces

A listed file that does not exist is still returned (the build reports it as skipped).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from asva_jax.errors import AsvaError

DATASETS = ("avsync15", "landscapes", "thegreatesthits", "folder")
GREATEST_HITS_PROMPT = "hitting with a stick"
# Frame size (height, width) of each dataset's training data.
DEFAULT_SIZES = {"avsync15": (256, 256), "landscapes": (256, 256), "thegreatesthits": (128, 256),
                 "folder": (256, 256)}


# What each --dataset expects under its root (for error messages; docstring above in full).
LAYOUTS = {
    "avsync15": "ROOT/videos/<class>/<name>.mp4, ROOT/<split>.txt listing <class>/<name>.mp4, "
                "ROOT/class_mapping.json",
    "landscapes": "ROOT/videos/<split>/<class>/<name>.mp4, ROOT/<split>.txt listing <class>/<name>.mp4, "
                  "ROOT/class_mapping.json",
    "thegreatesthits": "ROOT/videos/<name>.mp4 and ROOT/<split>.txt listing <name>.mp4",
    "folder": "ROOT/<class>/*.mp4 (ROOT/<split>.txt optional)",
}


class DatasetLayoutError(AsvaError, ValueError):
  """The dataset folder does not have the expected layout."""


@dataclasses.dataclass(frozen=True)
class VideoEntry:
  key: str           # path relative to the video root, as in the list file
  path: str          # absolute path of the mp4
  class_folder: str
  prompt: str


@dataclasses.dataclass(frozen=True)
class DatasetListing:
  entries: list[VideoEntry]
  class_names: list[str]   # ClassLabel names (class folders), sorted
  list_file: str | None


def _read_list(path: Path) -> list[str]:
  if not path.is_file():
    raise DatasetLayoutError(f"{path}: split list not found")
  return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def _read_mapping(path: Path, required: bool) -> dict[str, str] | None:
  if not path.is_file():
    if required:
      raise DatasetLayoutError(f"{path}: class_mapping.json not found")
    return None
  try:
    mapping = json.loads(path.read_text())
  except json.JSONDecodeError as e:
    raise DatasetLayoutError(f"{path}: not valid JSON ({e})") from e
  if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
    raise DatasetLayoutError(f"{path}: expected an object {{class folder: prompt}}")
  return mapping


def _prompt(mapping: dict[str, str] | None, folder: str) -> str:
  if mapping is None:
    return folder.replace("_", " ")
  return mapping.get(folder, folder.replace("_", " "))


def list_videos(dataset: str, root: str | Path, split: str) -> DatasetListing:
  root = Path(root).absolute()
  if dataset not in DATASETS:
    raise DatasetLayoutError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
  if not root.is_dir():
    raise DatasetLayoutError(f"{root}: dataset root is not a folder")
  if dataset == "thegreatesthits":
    names = _read_list(root / f"{split}.txt")
    folder = GREATEST_HITS_PROMPT.replace(" ", "_")
    entries = [VideoEntry(n, str(root / "videos" / n), folder, GREATEST_HITS_PROMPT) for n in names]
    return DatasetListing(entries, [folder], str(root / f"{split}.txt"))
  if dataset in ("avsync15", "landscapes"):
    mapping = _read_mapping(root / "class_mapping.json", required=True)
    video_root = root / "videos" / (split if dataset == "landscapes" else "")
    rels = _read_list(root / f"{split}.txt")
    entries = [VideoEntry(r, str(video_root / r), r.split("/")[0], _prompt(mapping, r.split("/")[0]))
               for r in rels]
    classes = sorted(set(mapping) | {e.class_folder for e in entries})
    return DatasetListing(entries, classes, str(root / f"{split}.txt"))
  mapping = _read_mapping(root / "class_mapping.json", required=False)
  classes = sorted(p.name for p in root.iterdir() if p.is_dir())
  list_path = root / f"{split}.txt"
  if list_path.is_file():
    rels = _read_list(list_path)
  else:
    rels = [f"{c}/{p.name}" for c in classes for p in sorted((root / c).glob("*.mp4"))]
  entries = [VideoEntry(r, str(root / r), r.split("/")[0], _prompt(mapping, r.split("/")[0]))
             for r in rels]
  classes = sorted(set(classes) | {e.class_folder for e in entries})
  return DatasetListing(entries, classes, str(list_path) if list_path.is_file() else None)
