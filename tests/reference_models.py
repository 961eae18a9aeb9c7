"""Tiny random-weight PyTorch reference models and folders, built with diffusers / transformers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

TINY_UNET_2D = dict(
    block_out_channels=(16, 16, 32, 32), layers_per_block=1, norm_num_groups=4, attention_head_dim=4,
    cross_attention_dim=24, sample_size=8,
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)
TINY_VAE = dict(block_out_channels=(8, 16, 16), down_block_types=("DownEncoderBlock2D",) * 3,
                up_block_types=("UpDecoderBlock2D",) * 3, layers_per_block=2, norm_num_groups=4,
                latent_channels=4)
SD15_SCHEDULER = {
    "_class_name": "PNDMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
    "beta_start": 0.00085, "num_train_timesteps": 1000, "set_alpha_to_one": False,
    "skip_prk_steps": True, "steps_offset": 1, "trained_betas": None, "clip_sample": False}


def randomize(model: torch.nn.Module, seed: int = 0) -> None:
  """Every parameter random, norms included, at scales that keep activations O(1)."""
  gen = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, p in model.named_parameters():
      noise = torch.randn(p.shape, generator=gen)
      if "embedding" in name:
        p.copy_(noise)
      elif p.ndim > 1:
        p.copy_(noise / np.sqrt(p[0].numel()))
      elif "norm" in name and name.endswith("weight"):
        p.copy_(1 + 0.2 * noise)
      else:
        p.copy_(0.2 * noise)


def rel_err(a, b) -> float:
  """max |a - b| relative to max |b|."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.abs(a - b).max() / np.abs(b).max())


def byte_alphabet() -> list[str]:
  """GPT-2/CLIP's printable stand-ins for the 256 byte values."""
  printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
  extra = [b for b in range(256) if b not in printable]
  return [chr(b) for b in printable] + [chr(256 + i) for i in range(len(extra))]


def write_tiny_tokenizer(folder: Path) -> int:
  """vocab.json + merges.txt for a 518-token CLIP BPE; returns the vocabulary size."""
  chars = byte_alphabet()
  merges = [("d", "o"), ("do", "g</w>"), ("c", "a"), ("ca", "t</w>")]
  vocab = chars + [c + "</w>" for c in chars] + [a + b for a, b in merges]
  vocab += ["<|startoftext|>", "<|endoftext|>"]
  folder.mkdir(parents=True, exist_ok=True)
  (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
  (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
  return len(vocab)


def tiny_clip_text_config(vocab_size: int, hidden_size: int = 24):
  from transformers import CLIPTextConfig
  return CLIPTextConfig(vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                        num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=77,
                        hidden_act="quick_gelu", bos_token_id=vocab_size - 2,
                        eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1)


def tiny_unet_2d(seed: int = 0):
  from diffusers import UNet2DConditionModel
  torch.manual_seed(seed)
  model = UNet2DConditionModel(**TINY_UNET_2D).eval()
  randomize(model, seed)
  return model


def tiny_vae_checkpoint(folder: Path, config: dict = TINY_VAE, seed: int = 0):
  """A random diffusers `AutoencoderKL` saved under folder/torch and converted to folder/ckpt/vae;
  returns (the torch model, folder/torch, folder/ckpt)."""
  from diffusers import AutoencoderKL
  from asva_jax import component_folders
  from convert.vae import import_vae
  torch.manual_seed(0)
  model = AutoencoderKL(**config).eval()
  randomize(model, seed)
  model.save_pretrained(folder / "torch")
  module, diffusers_config = import_vae(folder / "torch")
  component_folders.save_module(folder / "ckpt" / "vae", module, diffusers_config)
  return model, folder / "torch", folder / "ckpt"


def write_tiny_sd15(root: Path, seed: int = 0) -> Path:
  """An SD1.5-layout folder (unet/, vae/, text_encoder/, tokenizer/, scheduler/) of tiny random models."""
  from diffusers import AutoencoderKL
  from transformers import CLIPTextModel
  tiny_unet_2d(seed).save_pretrained(root / "unet")
  torch.manual_seed(seed)
  vae = AutoencoderKL(**TINY_VAE).eval()
  randomize(vae, seed + 1)
  vae.save_pretrained(root / "vae")
  vocab = write_tiny_tokenizer(root / "tokenizer")
  text = CLIPTextModel(tiny_clip_text_config(vocab, TINY_UNET_2D["cross_attention_dim"])).eval()
  randomize(text, seed + 2)
  text.save_pretrained(root / "text_encoder")
  (root / "scheduler").mkdir(parents=True, exist_ok=True)
  (root / "scheduler" / "scheduler_config.json").write_text(json.dumps(SD15_SCHEDULER))
  return root
