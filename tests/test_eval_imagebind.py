"""ImageBind towers of the evaluation: parity with the original (fixture `imagebind_towers/`),
the BPE tokenizer, loader errors."""

import gzip
import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from asva_jax.errors import AsvaError
from asva_jax.eval.bpe_tokenizer import NUM_MERGES, BPETokenizer, byte_alphabet
from asva_jax.eval.imagebind import ImageBindConfig, load_imagebind

FIXTURE = Path(__file__).parent / "data" / "eval" / "imagebind_towers"
WEIGHTS = FIXTURE / "imagebind_towers.safetensors"
RTOL = 1e-4


@pytest.fixture(scope="module")
def io():
  return dict(np.load(FIXTURE / "io.npz"))


@pytest.fixture(scope="module")
def dims():
  """The fixture's sizes, restricted to the constructor's field names."""
  d = json.loads((FIXTURE / "dims.json").read_text())
  return {k: v for k, v in d.items() if k in ImageBindConfig.field_names()}


@pytest.fixture(scope="module")
def model(dims):
  return load_imagebind(WEIGHTS, **dims)


def assert_close(actual, expected, rtol=RTOL):
  actual = np.asarray(actual, np.float64)
  assert actual.shape == expected.shape, (actual.shape, expected.shape)
  err = np.abs(actual - expected).max() / np.abs(expected).max()
  assert err < rtol, err


def test_dims_are_the_fixtures(model, dims):
  for key, value in dims.items():
    assert getattr(model.config, key) == (tuple(value) if isinstance(value, list) else value)


def test_vision_tower(model, io):
  image = jnp.asarray(io["image"].transpose(0, 2, 3, 1))
  assert_close(model.vision_trunk(image), io["vision_trunk"])
  assert_close(model.vision_head(image), io["vision_head"])
  assert_close(model.encode_image(image), io["image_emb_clipmodel"])
  assert_close(model.embed("vision", image), io["vision_emb"])


def test_text_tower(model, io):
  ids = jnp.asarray(io["text_tokens"])
  assert_close(model.text_trunk(ids), io["text_trunk"])
  assert_close(model.text_head(ids), io["text_head"])
  assert_close(model.embed("text", ids), io["text_emb_scaled"])
  assert_close(model.encode_text(ids), io["text_emb"])


def test_audio_tower(model, io):
  mel = jnp.asarray(io["mel"])
  assert_close(model.audio_trunk(mel), io["audio_trunk"])
  assert_close(model.audio_head(mel), io["audio_head"])
  assert_close(model.embed("audio", mel), io["audio_emb_scaled"])
  assert_close(model.encode_audio(mel[:, 0]), io["audio_emb"])
  assert np.allclose(np.linalg.norm(np.asarray(model.encode_audio(mel)), axis=-1), 1.0, atol=1e-5)


def test_similarities_as_the_wrapper(model, io):
  image = model.encode_image(jnp.asarray(io["image"].transpose(0, 2, 3, 1)))
  assert_close((image * model.encode_audio(jnp.asarray(io["mel"]))).sum(-1), io["ia_sim"])
  assert_close((image * model.encode_text(jnp.asarray(io["text_tokens"][:2]))).sum(-1), io["it_sim"])


def write_tiny_vocab(path: Path, io) -> Path:
  """A BPE file with the real file's length whose merges produce the fixture's token ids.

  Each needed word gets a left-to-right chain of merges, its last merge at the line that
  gives the word its real id; every other line is an unused filler merge.
  """
  alphabet = byte_alphabet()
  words = {"dog": 1929, "barking": 32676, "playing": 1629, "violin": 17058, "fiddle": 35968,
           "hitting": 7957, "with": 593, "stick": 4987}
  merges = [None] * NUM_MERGES
  merges[3838 - 512] = ("_", "_</w>")
  for word, token_id in words.items():
    merges[token_id - 512] = (word[:-1], word[-1] + "</w>")
  free = (i for i in range(NUM_MERGES) if merges[i] is None)
  for word in words:
    for n in range(2, len(word)):
      merges[next(free)] = (word[:n - 1], word[n - 1])
  text = "#version: tiny\n" + "\n".join(
      " ".join(m) if m else f"{alphabet[0x80]}{i} {alphabet[0x81]}" for i, m in enumerate(merges))
  path.write_bytes(gzip.compress(text.encode("utf-8")))
  return path


def test_tokenizer_matches_imagebind(tmp_path, io):
  tokenizer = BPETokenizer(write_tiny_vocab(tmp_path / "bpe_simple_vocab_16e6.txt.gz", io))
  assert (tokenizer.sot, tokenizer.eot) == (49406, 49407)
  np.testing.assert_array_equal(tokenizer(list(io["texts"])), io["text_tokens"])
  # Lower-cased, HTML-unescaped (twice), whitespace collapsed, like the original.
  np.testing.assert_array_equal(tokenizer(["  DOG_Barking\n", "hitting \t with a &amp;#115;tick"]),
                                io["text_tokens"][[0, 2]])
  long = tokenizer("dog " * 100)[0]
  assert long.shape == (77,) and long[0] == 49406 and long[-1] == 49407 and (long[1:-1] == 1929).all()


def test_tokenize_through_the_model(tmp_path, dims, io):
  vocab = write_tiny_vocab(tmp_path / "vocab.txt.gz", io)
  model = load_imagebind(WEIGHTS, vocab_path=vocab, **dims)
  np.testing.assert_array_equal(model.tokenize(list(io["texts"])), io["text_tokens"])


def test_bad_vocab_file(tmp_path):
  with pytest.raises(AsvaError, match="no such BPE vocabulary"):
    BPETokenizer(tmp_path / "missing.txt.gz")
  (tmp_path / "plain.txt.gz").write_text("not gzip")
  with pytest.raises(AsvaError, match="plain.txt.gz"):
    BPETokenizer(tmp_path / "plain.txt.gz")


def test_loader_errors(tmp_path, dims):
  with pytest.raises(AsvaError, match="unknown dimension"):
    load_imagebind(WEIGHTS, vision_width=3, **dims)
  with pytest.raises(AsvaError, match="no such ImageBind"):
    load_imagebind(tmp_path / "imagebind_huge.pth")
  sd = load_file(str(WEIGHTS))
  del sd["modality_trunks.text.blocks.1.mlp.fc2.bias"]
  sd["modality_heads.text.proj.1.weight"] = sd["modality_heads.text.proj.1.weight"][:, :4]
  save_file(sd, str(tmp_path / "broken.safetensors"))
  with pytest.raises(AsvaError) as e:
    load_imagebind(tmp_path / "broken.safetensors", **dims)
  assert "broken.safetensors" in str(e.value) and "blocks.1.mlp.fc2.bias" in str(e.value)
  assert "modality_heads.text.proj.1.weight" in str(e.value)
