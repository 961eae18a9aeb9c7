"""One-click examples: the held-out clips of a demo workdir (`make demo` writes its synthetic
dataset into WORKDIR/data/synthetic: test.txt lists the held-out videos, class_mapping.json
their prompts), each as (video, category)."""

from __future__ import annotations

import json
from pathlib import Path

SYNTHETIC = Path("data") / "synthetic"


def demo_examples(ckpt: str, classes: list[str]) -> list[tuple[str, str]]:
  """[(video path, category)] of the held-out clips whose category the model knows; [] for any
  folder that is not a demo workdir."""
  root = Path(ckpt) / SYNTHETIC
  listing, mapping = root / "test.txt", root / "class_mapping.json"
  if not (listing.is_file() and mapping.is_file()):
    return []
  prompts = json.loads(mapping.read_text())
  out = []
  for line in listing.read_text().splitlines():
    name = line.strip()
    video = root / "videos" / name
    prompt = prompts.get(name.split("/")[0])
    if name and video.is_file() and prompt in classes:
      out.append((str(video), prompt))
  return out
