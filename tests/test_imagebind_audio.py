"""ImageBind audio encoder: parity with the original (both key namings), conversion, loading."""

import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from asva_jax import component_folders, load_audio_encoder
from asva_jax.models.imagebind_audio import ImageBindAudioConfig, build_audio_encoder
from convert.imagebind import export_audio_encoder, import_audio_encoder, import_imagebind
from asva_jax.torch_weights import variables
from convert.errors import ConversionError

FIXTURE = Path(__file__).parent / "data" / "imagebind_audio_tiny_a"
RTOL = 1e-5


@pytest.fixture(scope="module")
def dims():
  return json.loads((FIXTURE / "dims.json").read_text())


@pytest.fixture(scope="module")
def io():
  return dict(np.load(FIXTURE / "io.npz"))


@pytest.fixture(scope="module")
def folder_weights():
  return load_file(str(FIXTURE / "audio_encoder" / "diffusion_pytorch_model.safetensors"))


@pytest.fixture(scope="module")
def from_folder(dims):
  return import_audio_encoder(FIXTURE / "audio_encoder", dims)


@pytest.fixture(scope="module")
def from_pth(dims):
  return import_imagebind(FIXTURE / "imagebind_audio_branch.pth", dims)


def assert_close(actual, expected, rtol=RTOL):
  actual = np.asarray(actual, np.float64)
  assert actual.shape == expected.shape
  err = np.abs(actual - expected).max() / np.abs(expected).max()
  assert err < rtol, err


def test_config_from_fixture(from_folder, from_pth, dims):
  for _, config in (from_folder, from_pth):
    for key, value in dims.items():
      assert config[key] == value
    assert config["_class_name"] == "ImageBindSegmaskAudioEncoder" and config["n_segment"] == 12


def test_parity_wrapper_names(from_folder, io):
  model, _ = from_folder
  mel = io["mel"]
  assert_close(model.trunk_output(mel), io["trunk_out"])
  assert_close(model(mel), io["tokens"])
  assert_close(model(mel[:, 0]), io["tokens"])  # (B, 128, 204) input too
  assert_close(model.head_output(mel), io["head_out"])
  assert_close(model.null_tokens(), io["null_tokens"])
  assert model.null_tokens(3).shape == (3, 229, 64)


def test_parity_imagebind_names(from_pth, folder_weights, io):
  """ImageBind's checkpoint has no final LayerNorm: ours starts as (1, 0)."""
  model, _ = from_pth
  scale, bias = folder_weights["final_layer_norm.weight"], folder_weights["final_layer_norm.bias"]
  np.testing.assert_array_equal(model.final_layer_norm.scale[...], np.ones(64, np.float32))
  np.testing.assert_array_equal(model.final_layer_norm.bias[...], np.zeros(64, np.float32))
  mel = io["mel"]
  assert_close(model.trunk_output(mel), io["trunk_out"])
  assert_close(model(mel), (io["tokens"] - bias) / scale, rtol=1e-4)  # divides by small scales
  assert_close(model.head_output(mel), io["head_out"])
  assert_close(model.null_tokens(), (io["null_tokens"] - bias) / scale, rtol=1e-4)


def test_embedding_postprocessor(from_folder, io):
  model, _ = from_folder
  emb = np.asarray(model.embed(io["mel"]))
  head = io["head_out"]
  expected = 20.0 * head / np.linalg.norm(head, axis=-1, keepdims=True)
  assert_close(emb, expected)
  assert_close(model.embed(io["mel"], normalize=False), head)


def test_jit_and_segment_masks(from_folder, io):
  model, _ = from_folder
  tokens = nnx_jit_call(model, jnp.asarray(io["mel"]))
  assert_close(tokens, io["tokens"])
  np.testing.assert_array_equal(model.segment_masks(), io["segment_masks"])


def nnx_jit_call(model, mel):
  from flax import nnx
  return nnx.jit(lambda m, x: m(x))(model, mel)


def test_bad_mel_shape(from_folder):
  model, _ = from_folder
  with pytest.raises(ValueError, match="expected mel"):
    model(jnp.zeros((2, 128, 200)))


def test_round_trip_is_bit_exact(from_folder, folder_weights, tmp_path):
  model, config = from_folder
  out = export_audio_encoder(model, config, tmp_path / "audio_encoder")
  written = load_file(str(out / "diffusion_pytorch_model.safetensors"))
  assert sorted(written) == sorted(folder_weights)
  for key, value in folder_weights.items():
    assert written[key].dtype == value.dtype and written[key].shape == value.shape, key
    np.testing.assert_array_equal(written[key], value, err_msg=key)
  saved = json.loads((out / "config.json").read_text())
  original = json.loads((FIXTURE / "audio_encoder" / "config.json").read_text())
  assert {k: saved[k] for k in original} == original
  again, config_again = import_audio_encoder(out)  # dims come back from config.json
  assert config_again == config
  a, b = variables(model, object), variables(again, object)
  assert a.keys() == b.keys()
  for path in a:
    np.testing.assert_array_equal(a[path].get_value(), b[path].get_value())


def test_imagebind_names_export_as_wrapper(from_pth, folder_weights, tmp_path):
  model, config = from_pth
  out = export_audio_encoder(model, config, tmp_path)
  written = load_file(str(out / "diffusion_pytorch_model.safetensors"))
  assert sorted(written) == sorted(folder_weights)
  for key in folder_weights:
    if not key.startswith("final_layer_norm"):
      np.testing.assert_array_equal(written[key], folder_weights[key], err_msg=key)


def test_huge_key_count_and_parameters():
  """ImageBind-Huge (abstract): 179 wrapper tensors, 86,235,648 audio-branch parameters + final norm."""
  from flax import nnx
  from convert.imagebind import wrapper_name
  from asva_jax.torch_weights import torch_key_map
  model = build_audio_encoder(abstract=True)
  keys = torch_key_map(model, wrapper_name, kind=nnx.Variable)
  assert len(keys) == 179
  params = sum(int(np.prod(v.get_value().shape)) for v in variables(model, nnx.Param).values())
  assert params == 86_235_648 + 2 * 768
  assert "trunk.blocks.11.attn.in_proj_weight" in keys and "postprocessor.1.log_logit_scale" in keys


def test_missing_key_names_file(tmp_path):
  sd = torch.load(FIXTURE / "imagebind_audio_branch.pth", weights_only=True)
  del sd["modality_trunks.audio.blocks.1.mlp.fc2.bias"]
  bad = tmp_path / "broken_imagebind.pth"
  torch.save(sd, bad)
  with pytest.raises(ConversionError, match=r"broken_imagebind\.pth.*\n.*1 missing: "
                                            r"modality_trunks\.audio\.blocks\.1\.mlp\.fc2\.bias"):
    import_imagebind(bad, {"num_heads": 4})


def test_missing_key_in_folder_names_file(folder_weights, tmp_path):
  from asva_jax.torch_weights import save_safetensors
  weights = {k: v for k, v in folder_weights.items() if k != "head.2.weight"}
  save_safetensors(weights, tmp_path / "diffusion_pytorch_model.safetensors")
  with pytest.raises(ConversionError, match=r"diffusion_pytorch_model\.safetensors.*head\.2\.weight"):
    import_audio_encoder(tmp_path, {"num_heads": 4})


def test_not_an_audio_encoder(tmp_path):
  torch.save({"foo.weight": torch.zeros(3)}, tmp_path / "other.pth")
  with pytest.raises(ConversionError, match=r"other\.pth: missing tensor"):
    import_imagebind(tmp_path / "other.pth")


def test_save_and_load_checkpoint(from_folder, io, tmp_path):
  model, config = from_folder
  component_folders.save_module(tmp_path / "ckpt" / "audio_encoder", model, config)
  for path in (tmp_path / "ckpt", tmp_path / "ckpt" / "audio_encoder"):
    loaded = load_audio_encoder(path)
    assert loaded.config == model.config
    assert_close(loaded(io["mel"]), io["tokens"])
  half = load_audio_encoder(tmp_path / "ckpt", dtype=jnp.bfloat16)
  tokens = half(io["mel"])
  assert tokens.dtype == jnp.bfloat16 and bool(jnp.isfinite(tokens).all())
  # Measured 0.038 on tokens up to 3.9 (bf16 keeps 8 mantissa bits); a wrong path is off by O(1).
  assert float(jnp.abs(tokens.astype(jnp.float32) - io["tokens"]).max()) < 0.06


def test_config_validation():
  with pytest.raises(ValueError, match="not divisible"):
    ImageBindAudioConfig(embed_dim=64, num_heads=5)
  cfg = ImageBindAudioConfig()
  assert cfg.grid == (12, 19) and cfg.num_tokens == 229


def test_other_modalities_are_ignored(from_pth, io, tmp_path):
  sd = torch.load(FIXTURE / "imagebind_audio_branch.pth", weights_only=True)
  sd["modality_trunks.vision.blocks.0.attn.in_proj_weight"] = torch.zeros(6, 2)
  sd["modality_preprocessors.text.token_embedding.weight"] = torch.zeros(5, 2)
  torch.save(sd, tmp_path / "imagebind_all.pth")
  model, _ = import_imagebind(tmp_path / "imagebind_all.pth", {"num_heads": 4})
  assert_close(model.trunk_output(io["mel"]), io["trunk_out"])


def test_head_count_is_never_guessed():
  """Heads cannot be read from tensors: ImageBind-Huge's 12 for Huge's widths, else an error
  naming --audio-config (the tiny fixture has 4 heads, which embed_dim // 64 would call 1)."""
  from convert.imagebind import _config, _infer_dimensions

  class Shapes(dict):
    def shape(self, key):
      return self[key]

  def shapes(width, out):
    return Shapes({"preprocessor.cls_token": (1, 1, width), "preprocessor.rgbt_stem.proj.weight":
                   (width, 1, 16, 16), "head.2.weight": (out, width),
                   **{f"trunk.blocks.{i}.norm_1.weight": (width,) for i in range(12)}})

  huge = _infer_dimensions(shapes(768, 1024), lambda k: k, "huge.pth")
  assert huge["num_heads"] == 12 and _config(huge, source="huge.pth").num_heads == 12
  tiny = _infer_dimensions(shapes(64, 48), lambda k: k, "tiny.pth")
  assert "num_heads" not in tiny
  with pytest.raises(ConversionError, match=r"tiny\.pth: .*64 wide.*--audio-config"):
    _config(tiny, source="tiny.pth")
  assert _config(tiny, {"num_heads": 4}, source="tiny.pth").num_heads == 4
  with pytest.raises(ConversionError, match=r"imagebind_audio_branch\.pth: .*num_heads"):
    import_imagebind(FIXTURE / "imagebind_audio_branch.pth")
