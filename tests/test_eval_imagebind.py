"""ImageBind towers of the evaluation: parity with the original (fixture `imagebind_towers/`),
the BPE tokenizer, loader errors."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import load_file, save_file

from asva_jax.errors import AsvaError
from asva_jax.eval.bpe_tokenizer import BPETokenizer
from asva_jax.eval.imagebind import load_imagebind
from tests.eval_fixtures import IMAGEBIND as FIXTURE, imagebind_dims, write_tiny_vocab

WEIGHTS = FIXTURE / "imagebind_towers.safetensors"
RTOL = 1e-4


@pytest.fixture(scope="module")
def io():
  return dict(np.load(FIXTURE / "io.npz"))


@pytest.fixture(scope="module")
def dims():
  return imagebind_dims()


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


@pytest.fixture(scope="module")
def out(model, io):
  """Trunk, head and evaluation-wrapper outputs of the three towers, from one jitted call."""
  def run(m, image, ids, mel):
    return dict(vision_trunk=m.vision_trunk(image), vision_head=m.vision_head(image),
                image_emb_clipmodel=m.encode_image(image),
                text_trunk=m.text_trunk(ids), text_head=m.text_head(ids), text_emb=m.encode_text(ids),
                audio_trunk=m.audio_trunk(mel[:, 0]), audio_head=m.audio_head(mel[:, 0]),
                audio_emb=m.encode_audio(mel))  # (B, 1, 128, 204) as the original, or (B, 128, 204)
  result = nnx.jit(run)(model, jnp.asarray(io["image"].transpose(0, 2, 3, 1)),
                        jnp.asarray(io["text_tokens"]), jnp.asarray(io["mel"]))
  return {k: np.asarray(v) for k, v in result.items()}


@pytest.mark.parametrize("tower", ["vision", "text", "audio"])
def test_tower(out, io, tower):
  keys = {"vision": ("vision_trunk", "vision_head", "image_emb_clipmodel"),
          "text": ("text_trunk", "text_head", "text_emb"),
          "audio": ("audio_trunk", "audio_head", "audio_emb")}[tower]
  for key in keys:
    assert_close(out[key], io[key])


def test_wrapper_semantics(out, io, model):
  """Unit vectors; ImageBind's own outputs are them times the logit scales (17.5, 20)."""
  for key in ("image_emb_clipmodel", "text_emb", "audio_emb"):
    assert np.allclose(np.linalg.norm(out[key], axis=-1), 1.0, atol=1e-5)
  assert_close(out["image_emb_clipmodel"], io["vision_emb"])
  scale = lambda m: float(np.exp(np.asarray(model.modality_postprocessors[m][1].log_logit_scale[...])))
  assert_close(out["text_emb"] * scale("text"), io["text_emb_scaled"])
  assert_close(out["audio_emb"] * scale("audio"), io["audio_emb_scaled"])
  assert_close((out["image_emb_clipmodel"] * out["audio_emb"]).sum(-1), io["ia_sim"])
  assert_close((out["image_emb_clipmodel"] * out["text_emb"][:2]).sum(-1), io["it_sim"])


def test_tokenizer_matches_imagebind(tmp_path, io):
  tokenizer = BPETokenizer(write_tiny_vocab(tmp_path / "bpe_simple_vocab_16e6.txt.gz"))
  assert (tokenizer.sot, tokenizer.eot) == (49406, 49407)
  texts = [str(t) for t in io["texts"]]
  np.testing.assert_array_equal(tokenizer(texts), io["text_tokens"])
  # Lower-cased, HTML-unescaped (twice), whitespace collapsed, like the original.
  noisy = [f"  &amp;#{ord(t[0])};{t[1:].upper().replace(' ', chr(9) + '  ')}\n" for t in texts]
  np.testing.assert_array_equal(tokenizer(noisy), io["text_tokens"])
  word = texts[0].split()[0]
  long = tokenizer(" ".join([word] * 100))[0]
  first = tokenizer(word)[0][1]
  assert long.shape == (77,) and long[0] == 49406 and long[-1] == 49407 and long[1] == first


def test_tokenize_through_the_model(tmp_path, dims, io):
  vocab = write_tiny_vocab(tmp_path / "vocab.txt.gz")
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
