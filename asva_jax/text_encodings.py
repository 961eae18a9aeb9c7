"""Precomputed CLIP text encodings stored in a checkpoint's `text_encodings/` component.

AVSyncD never runs the text encoder in training: each class prompt has a fixed
(77, 768) encoding, and the empty prompt gives the null encoding. The folder holds

    text_encodings/config.json        {"prompts": [...], ...}; prompt i is tensor "i"
    text_encodings/encodings.safetensors

Tensors are keyed by index rather than by prompt so that any prompt text,
the empty one included, is stored verbatim (in the JSON).
"""

from __future__ import annotations

import os

import numpy as np

from asva_jax import component_folders
from asva_jax.constants import NULL_PROMPT

COMPONENT = "text_encodings"
ENCODINGS_FILE = "encodings.safetensors"


def load_text_encodings(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """prompt -> float32 (77, D), from a checkpoint root or its `text_encodings/` folder."""
  from safetensors.numpy import load
  cdir = component_folders.component_dir(path, COMPONENT)
  config = component_folders.load_config(cdir)
  prompts = config.get("prompts")
  if not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts):
    raise component_folders.CheckpointError(f"{cdir / 'config.json'}: no list of prompt strings under 'prompts'")
  weights = cdir / ENCODINGS_FILE
  if not weights.is_file():
    raise component_folders.CheckpointError(f"{weights}: missing")
  try:
    tensors = load(weights.read_bytes())  # local or gs://
  except Exception as e:  # safetensors raises its own error types
    raise component_folders.CheckpointError(f"{weights}: unreadable safetensors file ({e})") from e
  missing = [str(i) for i in range(len(prompts)) if str(i) not in tensors]
  if missing:
    raise component_folders.CheckpointError(f"{weights}: no tensors for prompt indices {', '.join(missing[:5])}")
  return {p: tensors[str(i)] for i, p in enumerate(prompts)}


def null_text_encoding(path: str | os.PathLike) -> np.ndarray:
  """The encoding of the empty prompt, (77, D): classifier-free guidance's "no text"."""
  encodings = load_text_encodings(path)
  if NULL_PROMPT not in encodings:
    raise component_folders.CheckpointError(f"{path}: the text encodings hold no null (empty-prompt) encoding")
  return encodings[NULL_PROMPT]
