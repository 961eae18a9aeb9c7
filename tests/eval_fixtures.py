"""Shared helpers of the evaluation tests: the copied fixtures and a tiny BPE vocabulary."""

import atexit
import functools
import gzip
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from asva_jax.eval.bpe_tokenizer import PATTERN, NUM_MERGES, byte_alphabet, clean
from asva_jax.eval.imagebind import ImageBindConfig

DATA = Path(__file__).parent / "data" / "eval"
IMAGEBIND = DATA / "imagebind_towers"


def imagebind_dims() -> dict:
  """The ImageBind fixture's sizes under the constructor's field names."""
  d = json.loads((IMAGEBIND / "dims.json").read_text())
  return {k: v for k, v in d.items() if k in ImageBindConfig.field_names()}


def fixture_words() -> dict[str, int]:
  """Pre-token (byte-mapped) -> real CLIP BPE id, read off the ImageBind fixture's texts and the
  token ids the original tokenizer gave them (texts whose words are one token each)."""
  io = np.load(IMAGEBIND / "io.npz")
  alphabet = byte_alphabet()
  words = {}
  for text, row in zip(io["texts"], io["text_tokens"]):
    pieces = [("".join(alphabet[b] for b in p.encode("utf-8"))) for p in PATTERN.findall(clean(str(text)))]
    ids = list(row[1:list(row).index(row.max())])
    if len(pieces) == len(ids):
      words.update((p, int(i)) for p, i in zip(pieces, ids))
  return words


def write_tiny_vocab(path: Path) -> Path:
  """A BPE file as long as ImageBind's whose merges give the fixture's words their real ids.

  Each word gets a left-to-right chain of merges, its last merge on the line that gives it
  its real id; every other line is an unused filler merge.
  """
  alphabet = byte_alphabet()
  merges = [None] * NUM_MERGES
  words = {w: i for w, i in fixture_words().items() if len(w) > 1}
  for word, token_id in words.items():
    merges[token_id - 512] = (word[:-1], word[-1] + "</w>")
  used = {m for m in merges if m}
  free = (i for i in range(NUM_MERGES) if merges[i] is None)
  for word in words:
    for n in range(2, len(word)):
      pair = (word[:n - 1], word[n - 1])
      if pair not in used:
        merges[next(free)] = pair
        used.add(pair)
  text = "#version: tiny\n" + "\n".join(
      " ".join(m) if m else f"{alphabet[0x80]}{i} {alphabet[0x81]}" for i, m in enumerate(merges))
  path.write_bytes(gzip.compress(text.encode("utf-8")))
  return path


@functools.lru_cache(maxsize=1)
def models_dir() -> Path:
  """A `--models` folder (docs/evaluation.md layout) of the fixtures' reduced networks, made once
  per process: tests that load the detectors from it get identical modules, so the jitted
  feature functions compile once for all of them."""
  root = Path(tempfile.mkdtemp(prefix="asva_eval_models_"))
  atexit.register(shutil.rmtree, root, ignore_errors=True)
  (root / "inception.safetensors").symlink_to(DATA / "inception_fid" / "pt_inception_format.safetensors")
  (root / "i3d.safetensors").symlink_to(DATA / "i3d" / "i3d.safetensors")  # stand-in for the TorchScript file
  (root / "imagebind.safetensors").symlink_to(IMAGEBIND / "imagebind_towers.safetensors")
  (root / "imagebind_dims.json").write_text(json.dumps(imagebind_dims()))
  write_tiny_vocab(root / "bpe_simple_vocab_16e6.txt.gz")
  (root / "avsync").symlink_to(DATA / "avsync_classifier" / "modules")
  return root
