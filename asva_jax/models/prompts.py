"""The one prompt-encoding object: prompt -> (77, D) float32 text encoding.

AVSyncD never runs the text encoder in training: each class prompt has a fixed encoding
(a converted checkpoint's precomputed `text_encodings/`), and the empty prompt gives the
null text. Prompts without a stored encoding are computed by the CLIP text encoder when
there is one (`encode`, loaded on first use), or, for from-scratch training, are stand-ins:
a fixed random (77, D) array per prompt derived from (seed, prompt). Training and sampling
use the same object; training stores what it `used` in its workdir.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping

import numpy as np

from asva_jax.constants import TEXT_LENGTH
from asva_jax.errors import AsvaError
from asva_jax.storage import as_path


class UnknownCategoryError(AsvaError, KeyError):
  """A prompt with no stored encoding, and no text encoder to compute one."""

  def __str__(self) -> str:
    return str(self.args[0])


def stand_in(seed: int, prompt: str, dim: int) -> np.ndarray:
  digest = int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:8], "little")
  return np.random.default_rng([seed, digest]).standard_normal((TEXT_LENGTH, dim)).astype(np.float32)


class PromptEncoder:
  """prompt -> (77, D) float32, remembering every prompt it was asked for (`used`).

  `stored`: prompt -> encoding (a mapping, or a callable that raises KeyError for an unknown
  prompt). `encode`: list of prompts -> (N, 77, D), for the others. `stand_in=(seed, dim)`:
  fixed random encodings for the others (from-scratch training). `unknown(prompt)`: the error
  for a prompt none of them gives (default `UnknownCategoryError`).
  """

  def __init__(self, stored: Mapping | Callable = (), *, encode: Callable | None = None,
               stand_in: tuple[int, int] | None = None, unknown: Callable[[str], Exception] | None = None):
    self.stored = stored if callable(stored) else dict(stored)
    self.encode, self.stand_in = encode, stand_in
    self.unknown = unknown or (lambda p: UnknownCategoryError(
        f"unknown category {p!r}: no encoding for it and no text encoder"))
    self.used: dict[str, np.ndarray] = {}

  def __getitem__(self, prompt: str) -> np.ndarray:
    if prompt not in self.used:
      self.used[prompt] = self._encode(prompt)
    return self.used[prompt]

  def _encode(self, prompt: str) -> np.ndarray:
    if callable(self.stored):
      try:
        return np.asarray(self.stored(prompt), np.float32)
      except KeyError:
        pass
    elif prompt in self.stored:
      return np.asarray(self.stored[prompt], np.float32)
    if self.encode is not None:
      return np.asarray(self.encode([prompt])[0], np.float32)
    if self.stand_in is not None:
      seed, dim = self.stand_in
      return stand_in(seed, prompt, dim)
    raise self.unknown(prompt)

  def batch(self, prompts) -> np.ndarray:
    """(B, 77, D) for a batch's prompts (bytes or str)."""
    return np.stack([self[p.decode() if isinstance(p, bytes) else str(p)] for p in prompts])


def clip_encoder(path) -> Callable[[list[str]], np.ndarray]:
  """The CLIP text encoder of checkpoint folder `path` (text_encoder/ + tokenizer/), loaded on first use."""
  loaded: list = []

  def encode(prompts: list[str]) -> np.ndarray:
    from asva_jax.models.clip_text import load_text_encoder
    from asva_jax.models.clip_tokenizer import encode_prompts, load_tokenizer
    if not loaded:
      loaded.extend([load_text_encoder(path), load_tokenizer(path)])
    return encode_prompts(*loaded, prompts)

  return encode


def has_clip_encoder(path) -> bool:
  path = as_path(path)
  return (path / "text_encoder").is_dir() and (path / "tokenizer").is_dir()
