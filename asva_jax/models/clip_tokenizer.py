"""Prompts -> CLIP token ids -> text encodings, with SD1.5's `tokenizer/` files.

Tokenisation stays in transformers' `CLIPTokenizer` (BPE is not worth
re-implementing); it pads every prompt to 77 ids with `<|endoftext|>` and
truncates longer ones, as Stable Diffusion pipelines do. No attention mask is
passed to the encoder, so padding positions matter and are part of the encoding.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

MAX_LENGTH = 77
TOKENIZER_FILES = ("vocab.json", "merges.txt")


def tokenizer_dir(path: str | os.PathLike) -> Path:
  """`path/tokenizer` for a checkpoint (or SD1.5) root, else `path` itself."""
  path = Path(path)
  for candidate in (path / "tokenizer", path):
    if all((candidate / f).is_file() for f in TOKENIZER_FILES):
      return candidate
  raise FileNotFoundError(f"{path}: no CLIP tokenizer files ({', '.join(TOKENIZER_FILES)}) "
                          f"in it or in its tokenizer/ folder")


def load_tokenizer(path: str | os.PathLike):
  """transformers' `CLIPTokenizer` from a checkpoint root or a `tokenizer/` folder."""
  from transformers import CLIPTokenizer
  folder = tokenizer_dir(path)
  try:
    return CLIPTokenizer.from_pretrained(str(folder))
  except Exception as e:  # transformers raises assorted types for broken vocabularies
    raise ValueError(f"{folder}: CLIPTokenizer cannot load these files ({e})") from e


def tokenize(tokenizer, prompts: str | Sequence[str], max_length: int = MAX_LENGTH) -> np.ndarray:
  """Prompts -> int32 ids (B, max_length): BOS, tokens, EOS, then `<|endoftext|>` padding."""
  if isinstance(prompts, str):
    prompts = [prompts]
  ids = tokenizer(list(prompts), padding="max_length", max_length=max_length, truncation=True,
                  return_tensors="np").input_ids
  return ids.astype(np.int32)


def encode_prompts(text_encoder, tokenizer, prompts: str | Sequence[str]) -> np.ndarray:
  """Prompts -> last hidden states (B, 77, D) as float32 numpy; `""` gives the null text encoding."""
  from flax import nnx
  import jax.numpy as jnp
  ids = tokenize(tokenizer, prompts, text_encoder.config.max_position_embeddings)
  run = nnx.jit(lambda model, x: model(x))
  return np.asarray(run(text_encoder, jnp.asarray(ids)), dtype=np.float32)
