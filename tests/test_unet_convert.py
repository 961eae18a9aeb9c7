"""UNet conversion: round trips, SD1.5 inflation against diffusers, sizes, bad input, the CLIs."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from safetensors.numpy import load_file, save_file

from asva_jax import component_folders, load_unet
from asva_jax.models.unet_3d import build_unet, trainable
from asva_jax.models.unet_config import DEFAULT_CONFIG
from asva_jax import torch_weights as sd
from convert.errors import ConversionError
from convert.unet import export_unet, import_unet, inflate_sd15
from tests.reference_models import TINY_UNET_2D, rel_err, write_tiny_sd15

ROOT = Path(__file__).parents[1]
DATA = Path(__file__).parent / "data"
UNET = DATA / "unet_tiny_a" / "unet"
WEIGHTS = "diffusion_pytorch_model.safetensors"


def test_round_trip_is_bit_exact(tmp_path):
  unet, config = import_unet(UNET)
  export_unet(unet, config, tmp_path)
  original, exported = load_file(UNET / WEIGHTS), load_file(tmp_path / WEIGHTS)
  assert sorted(original) == sorted(exported) and len(original) == 710
  for key, value in original.items():
    assert exported[key].dtype == value.dtype and exported[key].shape == value.shape, key
    assert np.array_equal(exported[key], value), key
  assert json.loads((tmp_path / "config.json").read_text()) == json.loads((UNET / "config.json").read_text())


def test_checkpoint_folder_round_trip(tmp_path):
  unet, config = import_unet(UNET)
  component_folders.save_module(tmp_path / "unet", unet, config)
  for path in (tmp_path, tmp_path / "unet"):
    restored = load_unet(path)
    for (p, a), (q, b) in zip(nnx.to_flat_state(nnx.state(unet)), nnx.to_flat_state(nnx.state(restored))):
      assert p == q and np.array_equal(a.get_value(), b.get_value()), p
  half = load_unet(tmp_path, param_dtype=jnp.bfloat16)
  assert half.conv_in.kernel.get_value().dtype == jnp.bfloat16


def test_default_size_counts():
  """Built abstractly: no memory for 1.17 B parameters."""
  unet = build_unet(DEFAULT_CONFIG, abstract=True)
  flat = nnx.to_flat_state(nnx.state(unet, nnx.Param))
  sizes = {p: int(np.prod(v.get_value().shape)) for p, v in flat}
  assert sum(sizes.values()) == 1_169_357_496
  assert sum(n for p, n in sizes.items() if trainable(p)) == 309_836_532
  keys = sd.torch_key_map(unet)
  assert len(keys) == 1106
  new = [k for k in keys if "_temp" in k or "_audio" in k]
  assert len(new) == 420 and len(keys) - len(new) == 686
  variables = sd.variables(unet)
  shapes = {k: sd.torch_shape(p, tuple(variables[p].get_value().shape)) for k, p in keys.items()}
  assert shapes["conv_out.conv_temp.weight"] == (4, 12)
  assert shapes["up_blocks.2.resnets.0.conv_shortcut.conv_temp.weight"] == (640, 1920)
  assert shapes["down_blocks.0.attentions.0.transformer_blocks.0.attn_audio.to_k.weight"] == (320, 768)
  assert shapes["mid_block.attentions.0.transformer_blocks.0.ff.net.0.proj.weight"] == (10240, 1280)


@pytest.fixture(scope="module")
def sd15(tmp_path_factory):
  root = write_tiny_sd15(tmp_path_factory.mktemp("sd15"))
  return root


def test_inflated_unet_equals_2d_unet_on_still_video(sd15):
  """Exact by construction, not approximately: with every frame the same image,
  - each FF conv's temporal mix is zero (conv_temp is zero-initialised), so it is the 2-D conv;
  - GroupNorm over F identical frames has the per-image statistics;
  - first-frame attention reads frame 0's keys, which are the frame's own: plain self-attention;
  - the audio and temporal attentions add nothing once their output projections are zeroed
    (the temporal one's bias is not zero at init, so the test zeroes weight and bias of both);
  - text cross-attention and the time embedding are the 2-D model's, shared by all frames.
  """
  from diffusers import UNet2DConditionModel
  unet3d, config = inflate_sd15(sd15 / "unet", seed=3, audio_cross_attention_dim=16)
  assert config["_class_name"] == "AudioUNet3DConditionModel" and config["audio_cross_attention_dim"] == 16
  for path, var in sd.variables(unet3d).items():
    name = ".".join(map(str, path))
    if "conv_temp" in name or name.endswith("attn_temp.to_out.0.kernel"):
      assert not np.any(var.get_value()), name
    if name.endswith("attn_temp.to_out.0.bias"):
      assert np.any(var.get_value()), name
    if ("norm_temp" in name or "norm_audio" in name):
      assert np.all(var.get_value() == (1 if path[-1] == "scale" else 0)), name
    if "attn_audio.to_out" in name or "attn_temp.to_out" in name:
      var.set_value(jnp.zeros_like(var.get_value()))

  model2d = UNet2DConditionModel.from_pretrained(sd15 / "unet").eval()
  rng = np.random.default_rng(0)
  image = rng.standard_normal((2, 4, 8, 8), np.float32)
  text = rng.standard_normal((2, 7, TINY_UNET_2D["cross_attention_dim"]), np.float32)
  t = np.array([10, 700])
  with torch.no_grad():
    expected = model2d(torch.tensor(image), torch.tensor(t), torch.tensor(text)).sample.numpy()
  frames = 5
  video = np.repeat(image.transpose(0, 2, 3, 1)[:, None], frames, axis=1)
  audio = rng.standard_normal((2, 9, 16), np.float32)
  mask = rng.random((2, frames, 9)) < 0.5
  out = nnx.jit(lambda m, *a: m(*a))(unet3d, video, t, text, audio, mask)
  out = np.asarray(out).transpose(0, 1, 4, 2, 3)
  for f in range(frames):
    assert rel_err(out[:, f], expected) < 1e-5, f


def test_inflation_copies_every_2d_tensor(sd15):
  unet3d, _ = inflate_sd15(sd15 / "unet")
  state2d = load_file(sd15 / "unet" / WEIGHTS)
  exported = sd.export_state_dict(unet3d)
  copied = [k for k in state2d if np.array_equal(exported[k], state2d[k])]
  assert len(copied) == len(state2d)
  assert sorted(set(exported) - set(state2d)) == sorted(k for k in exported if "_temp" in k or "_audio" in k)


def test_inflation_rejects_a_foreign_2d_unet(sd15, tmp_path):
  shutil.copy(sd15 / "unet" / "config.json", tmp_path / "config.json")
  state = load_file(sd15 / "unet" / WEIGHTS)
  state.pop("conv_in.weight")
  save_file(state, str(tmp_path / WEIGHTS))
  with pytest.raises(ConversionError, match=r"(?s)diffusion_pytorch_model.safetensors.*1 missing: conv_in.weight"):
    inflate_sd15(tmp_path)


@pytest.mark.parametrize("damage", ["missing", "unexpected", "misshaped"])
def test_bad_weights_name_the_file_and_keys(tmp_path, damage):
  shutil.copy(UNET / "config.json", tmp_path / "config.json")
  state = load_file(UNET / WEIGHTS)
  key = "mid_block.attentions.0.transformer_blocks.0.attn_audio.to_k.weight"
  if damage == "missing":
    state.pop(key)
  elif damage == "unexpected":
    state["something.else"] = np.zeros(3, np.float32)
  else:
    state[key] = np.zeros((3, 3), np.float32)
  save_file(state, str(tmp_path / WEIGHTS))
  expected = {"missing": f"1 missing: {key}", "unexpected": "1 unexpected: something.else",
              "misshaped": f"1 with wrong shape: {key} (3, 3)"}[damage]
  with pytest.raises(ConversionError) as info:
    import_unet(tmp_path)
  assert str(tmp_path / WEIGHTS) in str(info.value) and expected in str(info.value)


def test_bad_folders(tmp_path):
  with pytest.raises(ConversionError, match="config.json"):
    import_unet(tmp_path)
  shutil.copy(UNET / "config.json", tmp_path / "config.json")
  with pytest.raises(ConversionError, match="no weights file"):
    import_unet(tmp_path)
  (tmp_path / WEIGHTS).write_bytes(b"not a safetensors file")
  with pytest.raises(ConversionError, match="unreadable safetensors"):
    import_unet(tmp_path)
  config = json.loads((UNET / "config.json").read_text())
  (tmp_path / "config.json").write_text(json.dumps({**config, "use_linear_projection": True}))
  with pytest.raises(ConversionError, match="use_linear_projection"):
    import_unet(tmp_path)


class NotATensor:
  """A pickled object that `weights_only` loading must refuse to build."""


def test_bin_file_is_loaded_without_unpickling_objects(tmp_path):
  shutil.copy(UNET / "config.json", tmp_path / "config.json")
  torch.save({"payload": NotATensor()}, tmp_path / "diffusion_pytorch_model.bin")
  with pytest.raises(ConversionError, match="not a tensors-only"):
    import_unet(tmp_path)


def test_checkpoint_that_does_not_fit_the_config(tmp_path):
  unet, config = import_unet(UNET)
  component_folders.save_module(tmp_path / "unet", unet, config)
  (tmp_path / "unet" / "config.json").write_text(json.dumps({**config, "cross_attention_dim": 32}))
  with pytest.raises(component_folders.CheckpointError, match="wrong shape"):
    load_unet(tmp_path)


def _cli(*args):
  result = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True)
  assert result.returncode == 0, result.stderr[-3000:]
  return result


def test_cli_whole_checkpoint_and_export(sd15, tmp_path):
  """SD1.5 + ImageBind into one folder, then a released modules/ folder replacing unet and
  audio_encoder in place, then back to PyTorch folders that hold the original tensors."""
  ib = DATA / "imagebind_audio_tiny_a"
  ckpt, out, modules = tmp_path / "ckpt", tmp_path / "torch", tmp_path / "modules"
  _cli("convert.from_pytorch", f"--sd15={sd15}", f"--imagebind={ib / 'imagebind_audio_branch.pth'}",
       '--audio-config={"num_heads": 4}', f"--out={ckpt}")
  assert sorted(p.name for p in ckpt.iterdir()) == [
      "audio_encoder", "run_spec.json", "scheduler", "text_encoder", "text_encodings", "tokenizer", "unet", "vae"]
  inflated = load_unet(ckpt)
  assert not np.any(inflated.conv_in.conv_temp.kernel.get_value())

  shutil.copytree(UNET, modules / "unet")
  shutil.copytree(ib / "audio_encoder", modules / "audio_encoder")
  _cli("convert.from_pytorch", f"--avsyncd={modules}", '--audio-config={"num_heads": 4}', f"--out={ckpt}")
  assert len(list(ckpt.iterdir())) == 8  # replaced in place, no temporary folders left
  _cli("convert.to_pytorch", f"--ckpt={ckpt}", f"--out={out}")
  assert sorted(p.name for p in out.iterdir()) == [
      "audio_encoder", "scheduler", "text_encoder", "tokenizer", "unet", "vae"]
  from diffusers import PNDMScheduler
  exported, original = (PNDMScheduler.from_pretrained(f / "scheduler") for f in (out, sd15))
  assert exported.config.prediction_type == original.config.prediction_type == "epsilon"
  assert np.array_equal(exported.alphas_cumprod.numpy(), original.alphas_cumprod.numpy())
  for original_folder in (UNET, ib / "audio_encoder", sd15 / "vae"):
    original = load_file(original_folder / WEIGHTS)
    exported = load_file(out / original_folder.name / WEIGHTS)
    assert sorted(original) == sorted(exported), original_folder
    assert all(np.array_equal(original[k], exported[k]) for k in original), original_folder

  # The converted components compute what the originals compute.
  import asva_jax
  from diffusers import AutoencoderKL
  from transformers import CLIPTextModel, CLIPTokenizer

  from asva_jax.text_encodings import null_text_encoding
  io = dict(np.load(ib / "io.npz"))
  tokens = asva_jax.load_audio_encoder(ckpt)(io["mel"])
  assert rel_err(np.asarray(tokens), io["tokens"]) < 1e-5
  latents = np.random.default_rng(0).standard_normal((1, 4, 4, 4)).astype(np.float32)
  with torch.no_grad():
    images = AutoencoderKL.from_pretrained(sd15 / "vae").eval().decode(torch.from_numpy(latents)).sample
    ids = CLIPTokenizer.from_pretrained(sd15 / "tokenizer")(
        [""], padding="max_length", max_length=77, return_tensors="pt").input_ids
    null = CLIPTextModel.from_pretrained(sd15 / "text_encoder").eval()(ids).last_hidden_state[0]
  decoded = asva_jax.load_vae(ckpt).decode(jnp.asarray(latents.transpose(0, 2, 3, 1)))
  assert rel_err(np.asarray(decoded), images.numpy().transpose(0, 2, 3, 1)) < 1e-5
  text_states = asva_jax.load_text_encoder(ckpt)(jnp.asarray(ids.numpy()))
  assert rel_err(np.asarray(text_states[0]), null.numpy()) < 1e-5
  assert rel_err(null_text_encoding(ckpt), null.numpy()) < 1e-5
