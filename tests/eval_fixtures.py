"""Shared helpers of the evaluation tests: the copied fixtures and a tiny BPE vocabulary."""

import atexit
import functools
import gzip
import json
import shutil
import tempfile
from pathlib import Path

from asva_jax.eval.bpe_tokenizer import NUM_MERGES, byte_alphabet
from asva_jax.eval.imagebind import ImageBindConfig

DATA = Path(__file__).parent / "data" / "eval"
IMAGEBIND = DATA / "imagebind_towers"


def imagebind_dims() -> dict:
  """The ImageBind fixture's sizes under the constructor's field names."""
  d = json.loads((IMAGEBIND / "dims.json").read_text())
  return {k: v for k, v in d.items() if k in ImageBindConfig.field_names()}


# Real CLIP BPE ids of the words in the fixtures' texts and categories.
WORD_IDS = {"dog": 1929, "barking": 32676, "playing": 1629, "violin": 17058, "fiddle": 35968,
            "hitting": 7957, "with": 593, "stick": 4987}
DOUBLE_UNDERSCORE_ID = 3838


def write_tiny_vocab(path: Path) -> Path:
  """A BPE file as long as ImageBind's whose merges give the fixtures' words their real ids.

  Each word gets a left-to-right chain of merges, its last merge on the line that gives
  it its real id; every other line is an unused filler merge.
  """
  alphabet = byte_alphabet()
  merges = [None] * NUM_MERGES
  merges[DOUBLE_UNDERSCORE_ID - 512] = ("_", "_</w>")
  for word, token_id in WORD_IDS.items():
    merges[token_id - 512] = (word[:-1], word[-1] + "</w>")
  free = (i for i in range(NUM_MERGES) if merges[i] is None)
  for word in WORD_IDS:
    for n in range(2, len(word)):
      merges[next(free)] = (word[:n - 1], word[n - 1])
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
