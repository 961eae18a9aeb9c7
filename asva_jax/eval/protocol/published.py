"""AVSyncD's published numbers (docs/reference.md §9.4): what a protocol run is compared with.

Source: the table of released checkpoints in the README of the original repository
(github.com/lzhangbj/ASVA, README.md, "Download pretrained AVSyncD ..."): FVD and AlignSync (×100)
per dataset and audio guidance, text guidance 1, seed 0, 3 clips per test video, the released
checkpoints. The README publishes no FID, IA, IT or RelSync for them; those columns stay empty
rather than guessed. tests/test_eval_protocol.py checks this table against docs/reference.md §9.4.
"""

from __future__ import annotations

DATASETS = ("avsync15", "landscapes", "thegreatesthits")
SOURCE = "ASVA README (github.com/lzhangbj/ASVA), released checkpoints"
TEXT_GUIDANCE = 1.0

# (dataset, audio guidance) -> {metric: value}; AlignSync as published, x100.
VALUES = {
    ("avsync15", 1.0): {"FVD": 323.06, "AlignSync": 22.21},
    ("avsync15", 4.0): {"FVD": 300.82, "AlignSync": 22.64},
    ("avsync15", 8.0): {"FVD": 375.02, "AlignSync": 22.70},
    ("landscapes", 1.0): {"FVD": 491.37, "AlignSync": 24.94},
    ("landscapes", 4.0): {"FVD": 449.59, "AlignSync": 25.02},
    ("landscapes", 8.0): {"FVD": 547.97, "AlignSync": 25.16},
    ("thegreatesthits", 1.0): {"FVD": 305.41, "AlignSync": 22.56},
    ("thegreatesthits", 4.0): {"FVD": 255.49, "AlignSync": 22.89},
    ("thegreatesthits", 8.0): {"FVD": 279.12, "AlignSync": 23.14},
}


def published(dataset: str | None, audio_guidance: float, text_guidance: float) -> dict | None:
  """The published row for this dataset and guidance ({metric: value}, AlignSync x100), or None."""
  if dataset is None or float(text_guidance) != TEXT_GUIDANCE:
    return None
  row = VALUES.get((dataset.lower(), float(audio_guidance)))
  return dict(row) if row else None
