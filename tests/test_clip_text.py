"""CLIP text encoder, tokenizer and precomputed text encodings."""


import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from safetensors.numpy import load_file, save_file
from transformers import CLIPTextConfig as TorchCLIPTextConfig
from transformers import CLIPTextModel as TorchCLIPTextModel
from transformers import CLIPTokenizer

from asva_jax import component_folders
from asva_jax.models.clip_text import CLIPTextConfig, CLIPTextModel, load_text_encoder
from asva_jax.models.clip_tokenizer import encode_prompts, load_tokenizer, tokenize
from asva_jax.text_encodings import load_text_encodings, null_text_encoding
from convert.clip_text import (copy_tokenizer, export_text_encoder, import_text_encoder,
                               import_text_encodings, save_text_encodings)
from asva_jax.torch_weights import torch_key_map, torch_shape, variables
from convert.errors import ConversionError
from tests.reference_models import randomize, rel_err, tiny_clip_text_config, write_tiny_tokenizer

PROMPTS = ["a dog", "cat dog", ""]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  root = tmp_path_factory.mktemp("clip")
  vocab_size = write_tiny_tokenizer(root / "tokenizer")
  tokenizer = CLIPTokenizer.from_pretrained(str(root / "tokenizer"))
  config = tiny_clip_text_config(vocab_size, hidden_size=32)
  model = TorchCLIPTextModel(config).eval()
  randomize(model)
  model.save_pretrained(root / "safetensors")
  # transformers 5 only writes safetensors; SD1.5's pytorch_model.bin has the older
  # `text_model.` names and the `position_ids` buffer, which the converter must accept.
  (root / "bin").mkdir()
  (root / "bin" / "config.json").write_text((root / "safetensors" / "config.json").read_text())
  legacy = {"text_model." + k: v for k, v in model.state_dict().items()}
  legacy["text_model.embeddings.position_ids"] = torch.arange(77)[None]
  torch.save(legacy, root / "bin" / "pytorch_model.bin")
  ids = tokenizer(PROMPTS, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
  with torch.no_grad():
    hidden = model(ids).last_hidden_state.numpy()
  return dict(root=root, model=model, tokenizer=tokenizer, ids=ids.numpy(), hidden=hidden)


@pytest.fixture(scope="module")
def jax_encoder(setup):
  return import_text_encoder(setup["root"] / "safetensors")


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_parity_with_transformers(setup, fmt):
  encoder, config = import_text_encoder(setup["root"] / fmt)
  assert config["hidden_size"] == 32
  out = encoder(jnp.asarray(setup["ids"]))
  assert out.shape == (3, 77, 32)
  assert rel_err(out, setup["hidden"]) < 1e-5


def test_causal_mask(jax_encoder, setup):
  """Changing a later token leaves every earlier position unchanged."""
  encoder, _ = jax_encoder
  ids = jnp.asarray(setup["ids"][:1])
  out = encoder(ids)
  changed = encoder(ids.at[0, 10].set(5))
  np.testing.assert_array_equal(out[0, :10], changed[0, :10])
  assert not np.allclose(out[0, 10:], changed[0, 10:])


def test_tokenizer_and_null_encoding(jax_encoder, setup, tmp_path):
  encoder, _ = jax_encoder
  copy_tokenizer(setup["root"] / "tokenizer", tmp_path / "ckpt" / "tokenizer")
  assert sorted(p.name for p in (tmp_path / "ckpt" / "tokenizer").iterdir()) == ["merges.txt", "vocab.json"]
  tokenizer = load_tokenizer(tmp_path / "ckpt")
  ids = tokenize(tokenizer, PROMPTS)
  assert ids.dtype == np.int32 and ids.shape == (3, 77)
  np.testing.assert_array_equal(ids, setup["ids"])
  assert tokenize(tokenizer, "dog " * 100).shape == (1, 77)  # truncated
  encodings = encode_prompts(encoder, tokenizer, PROMPTS)
  assert rel_err(encodings, setup["hidden"]) < 1e-5
  null = encode_prompts(encoder, tokenizer, "")
  assert null.shape == (1, 77, 32)
  assert rel_err(null[0], setup["hidden"][2]) < 1e-5


def test_copy_tokenizer_rejects_bad_folders(setup, tmp_path):
  (tmp_path / "half").mkdir()
  (tmp_path / "half" / "vocab.json").write_text("{}")
  with pytest.raises(ConversionError, match="missing merges.txt"):
    copy_tokenizer(tmp_path / "half", tmp_path / "dst")
  (tmp_path / "broken").mkdir()
  (tmp_path / "broken" / "vocab.json").write_text("not json")
  (tmp_path / "broken" / "merges.txt").write_text("#version: 0.2\n")
  with pytest.raises(ConversionError, match="broken: CLIPTokenizer cannot load"):
    copy_tokenizer(tmp_path / "broken", tmp_path / "dst")
  assert not (tmp_path / "dst").exists()


def test_round_trip_bit_exact(jax_encoder, setup, tmp_path):
  encoder, config = jax_encoder
  export_text_encoder(encoder, config, tmp_path / "out")
  original = load_file(str(setup["root"] / "safetensors" / "model.safetensors"))
  exported = load_file(str(tmp_path / "out" / "model.safetensors"))
  assert sorted(exported) == sorted(original)
  for key, value in original.items():
    np.testing.assert_array_equal(exported[key], value, err_msg=key)
  reloaded = TorchCLIPTextModel.from_pretrained(tmp_path / "out").eval()
  with torch.no_grad():
    hidden = reloaded(torch.as_tensor(setup["ids"])).last_hidden_state.numpy()
  np.testing.assert_array_equal(hidden, setup["hidden"])


def test_checkpoint_save_and_load(jax_encoder, setup, tmp_path):
  encoder, config = jax_encoder
  component_folders.save_module(tmp_path / "ckpt" / "text_encoder", encoder, config)
  ids = jnp.asarray(setup["ids"])
  expected = encoder(ids)
  for path in (tmp_path / "ckpt", tmp_path / "ckpt" / "text_encoder"):
    restored = load_text_encoder(path)
    assert restored.config == encoder.config
    np.testing.assert_array_equal(restored(ids), expected)


def test_missing_key_names_the_file(setup, tmp_path):
  tensors = load_file(str(setup["root"] / "safetensors" / "model.safetensors"))
  del tensors["encoder.layers.1.mlp.fc2.weight"]
  folder = tmp_path / "broken"
  folder.mkdir()
  save_file(tensors, str(folder / "model.safetensors"))
  (folder / "config.json").write_text((setup["root"] / "safetensors" / "config.json").read_text())
  with pytest.raises(ConversionError, match=r"(?s)broken/model.safetensors.*encoder.layers.1.mlp.fc2.weight"):
    import_text_encoder(folder)


def test_sd15_default_matches_transformers_names_and_shapes():
  with torch.device("meta"):
    reference = TorchCLIPTextModel(TorchCLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072,
                                                       num_hidden_layers=12, num_attention_heads=12,
                                                       max_position_embeddings=77))
  expected = {k: tuple(v.shape) for k, v in reference.state_dict().items() if not k.endswith("position_ids")}
  module = nnx.eval_shape(lambda: CLIPTextModel(CLIPTextConfig(), rngs=nnx.Rngs(0)))
  vars_ = variables(module)
  rename = lambda k: k[:-len("embedding")] + "weight" if k.endswith(".embedding") else k
  ours = {key: torch_shape(path, tuple(vars_[path].get_value().shape))
          for key, path in torch_key_map(module, rename).items()}
  assert ours == expected


def test_precomputed_text_encodings_round_trip(tmp_path):
  gen = torch.Generator().manual_seed(0)
  classes = {"dog barking": torch.randn(77, 32, generator=gen), "frog croaking": torch.randn(1, 77, 32, generator=gen)}
  hits = torch.randn(77, 32, generator=gen)
  null = torch.randn(1, 1, 77, 32, generator=gen)
  torch.save(classes, tmp_path / "class_clip_text_encodings_stable-diffusion-v1-5.pt")
  (tmp_path / "hits").mkdir()
  torch.save(hits, tmp_path / "hits" / "class_clip_text_encodings_stable-diffusion-v1-5.pt")
  torch.save(null, tmp_path / "openai-clip-l_null_text_encoding.pt")
  encodings = import_text_encodings([str(tmp_path / "class_clip_text_encodings_stable-diffusion-v1-5.pt"),
                                     str(tmp_path / "hits" / "class_clip_text_encodings_stable-diffusion-v1-5.pt"),
                                     str(tmp_path / "openai-clip-l_null_text_encoding.pt")])
  assert sorted(encodings) == ["", "dog barking", "frog croaking", "hitting with a stick"]
  save_text_encodings(encodings, tmp_path / "ckpt" / "text_encodings")
  for path in (tmp_path / "ckpt", tmp_path / "ckpt" / "text_encodings"):
    loaded = load_text_encodings(path)
    assert sorted(loaded) == sorted(encodings)
    np.testing.assert_array_equal(loaded["dog barking"], classes["dog barking"].numpy())
    np.testing.assert_array_equal(loaded["frog croaking"], classes["frog croaking"][0].numpy())
    np.testing.assert_array_equal(loaded["hitting with a stick"], hits.numpy())
    np.testing.assert_array_equal(null_text_encoding(path), null[0, 0].numpy())


def test_precomputed_text_encodings_bad_input(tmp_path):
  torch.save({"a": torch.zeros(3)}, tmp_path / "flat.pt")
  with pytest.raises(ConversionError, match=r"flat.pt \['a'\]: encoding of shape \(3,\)"):
    import_text_encodings([str(tmp_path / "flat.pt")])
  torch.save({1: torch.zeros(77, 4)}, tmp_path / "intkeys.pt")
  with pytest.raises(ConversionError, match="intkeys.pt: key 1 is not a prompt"):
    import_text_encodings([str(tmp_path / "intkeys.pt")])
  (tmp_path / "garbage.pt").write_bytes(b"not a torch file")
  with pytest.raises(ConversionError, match="garbage.pt: not a tensors-only"):
    import_text_encodings([str(tmp_path / "garbage.pt")])
  save_text_encodings({"dog": np.zeros((77, 4), np.float32)}, tmp_path / "no_null")
  with pytest.raises(component_folders.CheckpointError, match="no null"):
    null_text_encoding(tmp_path / "no_null")
