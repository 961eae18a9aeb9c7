"""The fixed text encoding of each class prompt (AVSyncD never runs the text encoder in training).

From a converted checkpoint: its precomputed `text_encodings/` (missing prompts are
encoded with its CLIP text encoder when it has one). From scratch: stand-ins, a
fixed random (77, D) array per prompt derived from (seed, prompt), and the null
text (the empty prompt) is its own such array.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from asva_jax.constants import NULL_PROMPT, TEXT_LENGTH
from asva_jax.errors import AsvaError


def stand_in(seed: int, prompt: str, dim: int) -> np.ndarray:
  digest = int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:8], "little")
  return np.random.default_rng([seed, digest]).standard_normal((TEXT_LENGTH, dim)).astype(np.float32)


class TextEncodings:
  """prompt -> (77, D) float32, remembering every prompt it was asked for (to store in the workdir)."""

  def __init__(self, checkpoint: str, seed: int, dim: int):
    self.checkpoint, self.seed, self.dim = checkpoint, seed, dim
    self.known: dict[str, np.ndarray] = {}
    self._clip = None
    if checkpoint and (Path(checkpoint) / "text_encodings").is_dir():
      from asva_jax.text_encodings import load_text_encodings
      self.known = {p: np.asarray(v, np.float32) for p, v in load_text_encodings(checkpoint).items()}
    self.used: dict[str, np.ndarray] = {}
    self[NULL_PROMPT]

  def __getitem__(self, prompt: str) -> np.ndarray:
    if prompt not in self.used:
      self.used[prompt] = self._encode(prompt)
    return self.used[prompt]

  def _encode(self, prompt: str) -> np.ndarray:
    if prompt in self.known:
      return self.known[prompt]
    if not self.checkpoint:
      return stand_in(self.seed, prompt, self.dim)
    if not (Path(self.checkpoint) / "text_encoder").is_dir():
      raise AsvaError(f"--config.model.checkpoint={self.checkpoint}: no text encoding for prompt "
                      f"{prompt!r} and no text_encoder/ to compute one; convert the class encodings "
                      f"(python -m convert.from_pytorch --text-encodings ...) or the CLIP text encoder")
    if self._clip is None:
      import asva_jax
      self._clip = (asva_jax.load_text_encoder(self.checkpoint), asva_jax.load_tokenizer(self.checkpoint))
    from asva_jax.models.clip_tokenizer import encode_prompts
    return np.asarray(encode_prompts(*self._clip, [prompt])[0], np.float32)

  def batch(self, prompts) -> np.ndarray:
    """(B, 77, D) for a batch's prompts (bytes or str)."""
    return np.stack([self[p.decode() if isinstance(p, bytes) else str(p)] for p in prompts])
