"""ImageBind's text tokenizer: OpenAI CLIP's byte-level BPE over `bpe_simple_vocab_16e6.txt.gz`.

Differs from Stable Diffusion's `CLIPTokenizer` (`asva_jax.models.clip_tokenizer`) in
its vocabulary file format and its padding: ImageBind pads with id 0, not with
`<|endoftext|>` (harmless: its text head reads the end token, the largest id, and
the causal mask hides what follows). A text longer than the context keeps its first
76 ids and ends with `<|endoftext|>`.

Cleaning as the original: `ftfy.fix_text` when ftfy is installed (it only repairs
mis-decoded Unicode; plain ASCII category names are unaffected), HTML entities
unescaped twice, whitespace runs collapsed, lower-cased.
"""

from __future__ import annotations

import functools
import gzip
import html
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import regex

from asva_jax.errors import AsvaError

CONTEXT_LENGTH = 77
NUM_MERGES = 49152 - 256 - 2  # the merges the original reads from the file
VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
PATTERN = regex.compile(
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
    regex.IGNORECASE)


class TokenizerError(AsvaError, ValueError):
  """The BPE vocabulary file is missing or malformed."""


@functools.lru_cache()
def byte_alphabet() -> dict[int, str]:
  """Byte -> printable character: printable Latin-1 bytes map to themselves, the rest to
  code points from 256 on (so BPE never sees whitespace or control characters)."""
  printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
               + list(range(ord("®"), ord("ÿ") + 1)))
  chars = printable[:]
  extra = 0
  for b in range(256):
    if b not in printable:
      printable.append(b)
      chars.append(256 + extra)
      extra += 1
  return {b: chr(c) for b, c in zip(printable, chars)}


def clean(text: str) -> str:
  try:
    import ftfy
    text = ftfy.fix_text(text)
  except ImportError:
    pass
  text = html.unescape(html.unescape(text)).strip()
  return regex.sub(r"\s+", " ", text).strip().lower()


class BPETokenizer:
  """texts -> (B, 77) int32 ids: `<|startoftext|>`, BPE ids, `<|endoftext|>`, zeros."""

  def __init__(self, vocab_path: str | os.PathLike, context_length: int = CONTEXT_LENGTH):
    path = Path(vocab_path)
    if path.is_dir():
      path = path / VOCAB_FILE
    if not path.is_file():
      raise TokenizerError(f"{path}: no such BPE vocabulary file (ImageBind's {VOCAB_FILE})")
    try:
      lines = gzip.open(path).read().decode("utf-8").split("\n")
    except (OSError, UnicodeDecodeError, EOFError) as e:
      raise TokenizerError(f"{path}: not a gzipped UTF-8 BPE merges file ({e})") from e
    merges = [tuple(line.split()) for line in lines[1:NUM_MERGES + 1]]
    bad = next((i for i, m in enumerate(merges) if len(m) != 2), None)
    if bad is not None:
      raise TokenizerError(f"{path}: line {bad + 2} is not a merge of two symbols: {lines[bad + 1]!r}")
    alphabet = list(byte_alphabet().values())
    vocab = alphabet + [c + "</w>" for c in alphabet] + ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    self.encoder = {token: i for i, token in enumerate(vocab)}
    self.ranks = {m: i for i, m in enumerate(merges)}
    self.sot = self.encoder["<|startoftext|>"]
    self.eot = self.encoder["<|endoftext|>"]
    self.context_length = context_length
    self._cache: dict[str, tuple[str, ...]] = {}

  def bpe(self, word: str) -> tuple[str, ...]:
    """One pre-token (byte-mapped) -> its BPE symbols, the last one marked `</w>`."""
    if word in self._cache:
      return self._cache[word]
    symbols = list(word[:-1]) + [word[-1] + "</w>"]
    while len(symbols) > 1:
      pairs = set(zip(symbols, symbols[1:]))
      best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
      if best not in self.ranks:
        break
      merged, i = [], 0
      while i < len(symbols):
        if i < len(symbols) - 1 and (symbols[i], symbols[i + 1]) == best:
          merged.append(symbols[i] + symbols[i + 1])
          i += 2
        else:
          merged.append(symbols[i])
          i += 1
      symbols = merged
    self._cache[word] = tuple(symbols)
    return self._cache[word]

  def encode(self, text: str) -> list[int]:
    alphabet = byte_alphabet()
    ids = []
    for piece in PATTERN.findall(clean(text)):
      if piece in ("<|startoftext|>", "<|endoftext|>"):
        ids.append(self.encoder[piece])
        continue
      ids.extend(self.encoder[s] for s in self.bpe("".join(alphabet[b] for b in piece.encode("utf-8"))))
    return ids

  def __call__(self, texts: str | Sequence[str]) -> np.ndarray:
    if isinstance(texts, str):
      texts = [texts]
    out = np.zeros((len(texts), self.context_length), np.int32)
    for row, text in enumerate(texts):
      ids = ([self.sot] + self.encode(text))[:self.context_length - 1] + [self.eot]
      out[row, :len(ids)] = ids
    return out
