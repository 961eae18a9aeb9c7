"""SD1.5 VAE: parity with diffusers' AutoencoderKL through the converter, round trips, checkpoints."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL as TorchAutoencoderKL
from flax import nnx
from safetensors.numpy import load_file, save_file

from asva_jax import component_folders
from asva_jax.models.vae import AutoencoderKL, VAEConfig, load_vae, sample_latent
from asva_jax.torch_weights import torch_key_map, torch_shape, variables
from convert.errors import ConversionError
from convert.vae import export_vae, import_vae
from tests.reference_models import TINY_VAE, randomize, rel_err

TINY = TINY_VAE
WEIGHTS = "diffusion_pytorch_model.safetensors"


def nhwc(t: torch.Tensor) -> np.ndarray:
  return t.permute(0, 2, 3, 1).numpy()


@pytest.fixture(scope="module")
def torch_vae(tmp_path_factory):
  torch.manual_seed(0)
  model = TorchAutoencoderKL(**TINY).eval()
  randomize(model)
  root = tmp_path_factory.mktemp("vae")
  model.save_pretrained(root / "safetensors")
  model.save_pretrained(root / "bin", safe_serialization=False)
  images = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
  latents = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(2))
  with torch.no_grad():
    posterior = model.encode(images).latent_dist
    decoded = model.decode(latents).sample
  return dict(model=model, root=root, images=images, latents=latents, mean=posterior.mean,
              logvar=posterior.logvar, decoded=decoded)


@pytest.fixture(scope="module")
def jax_vae(torch_vae):
  return import_vae(torch_vae["root"] / "safetensors")


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_parity_with_diffusers(torch_vae, fmt):
  vae, config = import_vae(torch_vae["root"] / fmt)
  assert config["block_out_channels"] == list(TINY["block_out_channels"])
  mean, logvar = vae.encode(jnp.asarray(nhwc(torch_vae["images"])))
  assert mean.shape == (2, 4, 4, 4)
  assert rel_err(mean, nhwc(torch_vae["mean"])) < 1e-5
  assert rel_err(logvar, nhwc(torch_vae["logvar"])) < 1e-5
  decoded = vae.decode(jnp.asarray(nhwc(torch_vae["latents"])))
  assert decoded.shape == (2, 16, 16, 3)
  assert rel_err(decoded, nhwc(torch_vae["decoded"])) < 1e-5


def test_frames_fold_into_batch(jax_vae, torch_vae):
  vae, _ = jax_vae
  images = jnp.asarray(nhwc(torch_vae["images"]))
  mean5, logvar5 = vae.encode(images.reshape(1, 2, 16, 16, 3))
  mean4, _ = vae.encode(images)
  assert mean5.shape == (1, 2, 4, 4, 4) and logvar5.shape == (1, 2, 4, 4, 4)
  np.testing.assert_allclose(mean5.reshape(mean4.shape), mean4, rtol=1e-6, atol=1e-6)
  assert vae.decode(mean5).shape == (1, 2, 16, 16, 3)
  with pytest.raises(ValueError, match="expected"):
    vae.encode(images[0])


def test_jit_and_logvar_clamp(jax_vae, torch_vae):
  vae, _ = jax_vae
  graphdef, state = nnx.split(vae)
  state = jax.tree.map(lambda x: x, state)  # a copy: the module fixture stays untouched
  shifted = nnx.merge(graphdef, state)
  bias = shifted.quant_conv.bias.get_value()
  shifted.quant_conv.bias.set_value(bias.at[4:].set(1e3))  # logvar channels far above the clamp
  mean, logvar = nnx.jit(lambda m, x: m.encode(x))(shifted, jnp.asarray(nhwc(torch_vae["images"])))
  assert float(logvar.max()) == 20.0
  shifted.quant_conv.bias.set_value(bias.at[4:].set(-1e3))
  _, logvar = shifted.encode(jnp.asarray(nhwc(torch_vae["images"])))
  assert float(logvar.min()) == -30.0


def test_sample_latent():
  key = jax.random.key(0)
  mean = jnp.full((4, 32, 32, 4), 3.0)
  logvar = jnp.full_like(mean, np.log(4.0))
  z = sample_latent(key, mean, logvar)
  assert z.shape == mean.shape and z.dtype == mean.dtype
  np.testing.assert_allclose(float(z.mean()), 3.0, atol=0.1)
  np.testing.assert_allclose(float(z.std()), 2.0, atol=0.1)
  np.testing.assert_array_equal(z, sample_latent(key, mean, logvar))
  assert not np.array_equal(z, sample_latent(jax.random.key(1), mean, logvar))
  np.testing.assert_allclose(sample_latent(key, mean, jnp.full_like(mean, -30.0)), mean, atol=1e-5)


def test_round_trip_bit_exact(jax_vae, torch_vae, tmp_path):
  vae, config = jax_vae
  export_vae(vae, config, tmp_path / "out")
  original = load_file(str(torch_vae["root"] / "safetensors" / WEIGHTS))
  exported = load_file(str(tmp_path / "out" / WEIGHTS))
  assert sorted(exported) == sorted(original)
  for key, value in original.items():
    np.testing.assert_array_equal(exported[key], value, err_msg=key)
  reloaded = TorchAutoencoderKL.from_pretrained(tmp_path / "out").eval()
  with torch.no_grad():
    decoded = reloaded.decode(torch_vae["latents"]).sample
  np.testing.assert_array_equal(decoded.numpy(), torch_vae["decoded"].numpy())


def test_checkpoint_save_and_load(jax_vae, torch_vae, tmp_path):
  vae, config = jax_vae
  component_folders.save_module(tmp_path / "ckpt" / "vae", vae, config)
  latents = jnp.asarray(nhwc(torch_vae["latents"]))
  expected = vae.decode(latents)
  for path in (tmp_path / "ckpt", tmp_path / "ckpt" / "vae"):
    restored = load_vae(path)
    assert restored.config == vae.config
    np.testing.assert_array_equal(restored.decode(latents), expected)
  half = load_vae(tmp_path / "ckpt", dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)
  out = half.decode(latents.astype(jnp.bfloat16))
  assert out.dtype == jnp.bfloat16
  assert rel_err(out.astype(jnp.float32), expected) < 0.035  # measured 0.020


def test_missing_key_names_the_file(torch_vae, tmp_path):
  tensors = load_file(str(torch_vae["root"] / "safetensors" / WEIGHTS))
  del tensors["decoder.conv_out.bias"]
  folder = tmp_path / "broken"
  folder.mkdir()
  save_file(tensors, str(folder / WEIGHTS))
  (folder / "config.json").write_text((torch_vae["root"] / "safetensors" / "config.json").read_text())
  with pytest.raises(ConversionError, match=r"(?s)broken/diffusion_pytorch_model.safetensors.*decoder.conv_out.bias"):
    import_vae(folder)


def test_legacy_attention_names(jax_vae, torch_vae, tmp_path):
  tensors = load_file(str(torch_vae["root"] / "safetensors" / WEIGHTS))
  legacy = {}
  for key, value in tensors.items():
    for new, old in (("to_q", "query"), ("to_k", "key"), ("to_v", "value"), ("to_out.0", "proj_attn")):
      key = key.replace(f"attentions.0.{new}.", f"attentions.0.{old}.")
    legacy[key] = value
  assert "encoder.mid_block.attentions.0.proj_attn.weight" in legacy
  folder = tmp_path / "legacy"
  folder.mkdir()
  save_file(legacy, str(folder / WEIGHTS))
  (folder / "config.json").write_text((torch_vae["root"] / "safetensors" / "config.json").read_text())
  vae, _ = import_vae(folder)
  for path, var in variables(jax_vae[0]).items():
    np.testing.assert_array_equal(variables(vae)[path].get_value(), var.get_value())


def test_unsupported_config(torch_vae, tmp_path):
  config = json.loads((torch_vae["root"] / "safetensors" / "config.json").read_text())
  config["down_block_types"][0] = "AttnDownEncoderBlock2D"
  (tmp_path / "config.json").write_text(json.dumps(config))
  with pytest.raises(ConversionError, match="config.json.*down_block_types"):
    import_vae(tmp_path)


def test_sd15_default_matches_diffusers_names_and_shapes():
  """The default (SD1.5) module has diffusers' keys and shapes, checked without allocating either model."""
  sd15 = dict(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
              up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, norm_num_groups=32)
  with torch.device("meta"):
    reference = TorchAutoencoderKL(**sd15)
  expected = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
  module = nnx.eval_shape(lambda: AutoencoderKL(VAEConfig(), rngs=nnx.Rngs(0)))
  vars_ = variables(module)
  ours = {key: torch_shape(path, tuple(vars_[path].get_value().shape))
          for key, path in torch_key_map(module).items()}
  assert ours == expected
  assert sum(int(np.prod(s)) for s in ours.values()) == 83_653_863
