"""A tiny converted checkpoint folder and small media files for the sampling tests (built once per
session: `tiny_checkpoint()` is cached)."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import numpy as np

PROMPTS = ("lions roaring", "dog barking")
SIZE = (32, 32)
TEXT_DIM = 24
AUDIO_DIM = 16
UNET = {"_class_name": "AudioUNet3DConditionModel", "block_out_channels": [8, 16], "layers_per_block": 1,
        "norm_num_groups": 4, "attention_head_dim": 2, "cross_attention_dim": TEXT_DIM,
        "audio_cross_attention_dim": AUDIO_DIM,
        "down_block_types": ["FFSpatioAudioTempCrossAttnDownBlock3D", "FFSpatioTempResDownBlock3D"],
        "up_block_types": ["FFSpatioTempResUpBlock3D", "FFSpatioAudioTempCrossAttnUpBlock3D"]}
VAE = dict(block_out_channels=(8, 8, 8), layers_per_block=1, norm_num_groups=4)
AUDIO = dict(embed_dim=AUDIO_DIM, num_blocks=1, num_heads=2, out_embed_dim=8)



def write_checkpoint(root: Path, seed: int = 0) -> Path:
  """unet/, vae/, audio_encoder/, text_encodings/ of tiny random models and the run spec (the recipe's
  at SIZE), as the converters write them."""
  from flax import nnx

  from asva_jax.component_folders import save_module
  from asva_jax.models.random_weights import randomized
  from asva_jax.models.imagebind_audio import ImageBindAudioConfig, build_audio_encoder
  from asva_jax.models.unet_3d import build_unet
  from asva_jax.models.vae import AutoencoderKL, VAEConfig
  from convert.clip_text import save_text_encodings
  save_module(root / "unet", randomized(build_unet(UNET, abstract=True), seed), UNET)
  vae_config = VAEConfig(**VAE)
  vae = nnx.eval_shape(lambda: AutoencoderKL(vae_config, rngs=nnx.Rngs(0)))
  save_module(root / "vae", randomized(vae, seed + 1), vae_config.to_diffusers())
  audio_config = ImageBindAudioConfig(**AUDIO)
  audio = build_audio_encoder(audio_config, abstract=True)
  save_module(root / "audio_encoder", randomized(audio, seed + 2), audio_config.to_dict())
  rng = np.random.default_rng(seed)
  encodings = {p: rng.standard_normal((77, TEXT_DIM)).astype(np.float32) for p in ("",) + PROMPTS}
  save_text_encodings(encodings, root / "text_encodings")
  import dataclasses

  from asva_jax import run_spec
  run_spec.write_checkpoint_spec(root, dataclasses.replace(run_spec.checkpoint_recipe(root), frame_size=SIZE))
  return root


def write_media(root: Path, seconds: float = 2.0, name: str = "clip", seed: int = 0) -> dict[str, Path]:
  """An image (png, 40x48: cropped to square), an m4a audio and an mp4 video with audio."""
  from PIL import Image

  from data_prep.mp4 import write_mp4
  rng = np.random.default_rng(seed)
  root.mkdir(parents=True, exist_ok=True)
  image = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
  Image.fromarray(image).save(root / f"{name}.png")
  t = np.arange(int(seconds * 16000)) / 16000
  audio = (0.3 * np.sin(2 * np.pi * 440 * t) * (1 + np.sin(2 * np.pi * 1.5 * t))).astype(np.float32)
  write_mp4(root / f"{name}.m4a", None, 6, audio[None], sample_rate=16000)
  frames = rng.integers(0, 256, (int(seconds * 6), 40, 48, 3), dtype=np.uint8)
  write_mp4(root / f"{name}.mp4", frames, 6, audio[None], sample_rate=16000)
  return {"image": root / f"{name}.png", "audio": root / f"{name}.m4a", "video": root / f"{name}.mp4"}


@functools.cache
def tiny_checkpoint() -> Path:
  root = Path(tempfile.mkdtemp(prefix="asva-sampling-"))
  atexit.register(shutil.rmtree, root, ignore_errors=True)
  return write_checkpoint(root / "ckpt")


@functools.cache
def media(seconds: float = 2.0) -> dict[str, Path]:
  return write_media(tiny_checkpoint().parent / f"media-{seconds:g}", seconds)
