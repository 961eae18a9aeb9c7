"""Sampling speed, bf16 drift and long-audio chaining figures (random weights; no assertions).

    python -m benchmarks.sampling [--config tiny,medium] [--batch 1,8] [--steps 50]
    python -m benchmarks.sampling --config medium --bf16_drift
    python -m benchmarks.sampling --config tiny --long_audio --seconds 20

Speed: one row per (config, batch): the first call's time minus a repeat's (≈ compile time),
then seconds per clip of the whole `pipeline.sample` call (image encode, ImageBind tokens, 50
PNDM steps = 51 UNet calls with audio guidance at batch 2B, VAE decode of 12 frames), median
of `--runs` repeats. `full` is AVSyncD's size (SD1.5 UNet/VAE, ImageBind-Huge): meant for a GPU; on a
2-core CPU one UNet call takes ~23 s (the Colab notebook's CPU estimate).
Drift: the same clip in float32 and bfloat16, relative L2 of the final latents and mean
|difference| of the uint8 frames. Long audio: both chaining modes over `--seconds` of a
synthetic audio; seam smoothness (mean squared frame difference across window seams over
inside windows) and drift (RMS distance of each window's last frame to the input image).
With random weights these figures describe the sampler's mechanics, not video quality.
"""

from __future__ import annotations

import dataclasses
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags
from flax import nnx

from asva_jax.commands import runner
from asva_jax.models.random_weights import randomized

def define_flags(fv: flags.FlagValues = flags.FLAGS) -> None:
  flags.DEFINE_list("config", ["tiny"], "tiny, medium, full", flag_values=fv)
  flags.DEFINE_list("batch", ["1", "8"], "clips per call", flag_values=fv)
  flags.DEFINE_integer("steps", 50, "PNDM steps", flag_values=fv)
  flags.DEFINE_integer("runs", 2, "timed repeats after the first call", flag_values=fv)
  flags.DEFINE_string("dtype", "float32", "compute dtype of the UNet and the VAE", flag_values=fv)
  flags.DEFINE_bool("bf16_drift", False, "compare float32 and bfloat16 sampling", flag_values=fv)
  flags.DEFINE_bool("long_audio", False, "measure the two long-audio chaining modes", flag_values=fv)
  flags.DEFINE_float("seconds", 20.0, "audio length for --long_audio", flag_values=fv)
  flags.DEFINE_integer("seed", 0, "seed of weights and inputs", flag_values=fv)
  flags.DEFINE_string("ckpt", None, "--long_audio: a checkpoint folder or training workdir instead of random "
                      "weights; inputs are then a synthetic video's first frame and its class's audio events",
                      flag_values=fv)


DOWN, RES_DOWN = "FFSpatioAudioTempCrossAttnDownBlock3D", "FFSpatioTempResDownBlock3D"
UP, RES_UP = "FFSpatioAudioTempCrossAttnUpBlock3D", "FFSpatioTempResUpBlock3D"
CONFIGS = {
    "tiny": dict(size=32, text_dim=24, audio=dict(embed_dim=16, num_blocks=1, num_heads=2, out_embed_dim=8),
                 vae=dict(block_out_channels=(8, 8, 8), layers_per_block=1, norm_num_groups=4),
                 unet=dict(block_out_channels=[8, 16], layers_per_block=1, norm_num_groups=4, attention_head_dim=2,
                           down_block_types=[DOWN, RES_DOWN], up_block_types=[RES_UP, UP])),
    "medium": dict(size=128, text_dim=64, audio=dict(embed_dim=64, num_blocks=2, num_heads=4, out_embed_dim=32),
                   vae=dict(block_out_channels=(16, 32, 32, 32), layers_per_block=1, norm_num_groups=8),
                   unet=dict(block_out_channels=[32, 64, 64, 64], layers_per_block=2, norm_num_groups=32,
                             attention_head_dim=[2, 4, 4, 4])),
    "full": dict(size=256, text_dim=768, audio={}, vae={}, unet={}),
}


def build(name: str, dtype, seed: int = 0):
  """An in-memory models bundle of random weights."""
  from asva_jax.models.imagebind_audio import build_audio_encoder
  from asva_jax.models.unet_3d import build_unet
  from asva_jax.models.vae import AutoencoderKL, VAEConfig
  from asva_jax import run_spec
  from asva_jax.models.bundle import autoencoder_factor
  from asva_jax.pipeline import Models
  c = CONFIGS[name]
  unet_cfg = dict(c["unet"], cross_attention_dim=c["text_dim"],
                  audio_cross_attention_dim=c["audio"].get("embed_dim", 768))
  unet = randomized(build_unet(unet_cfg, abstract=True, dtype=dtype), seed)
  vae = randomized(nnx.eval_shape(lambda: AutoencoderKL(VAEConfig(**c["vae"]), dtype=dtype, rngs=nnx.Rngs(0))),
                   seed + 1)
  audio = randomized(build_audio_encoder(c["audio"], abstract=True), seed + 2)
  rng = np.random.default_rng(seed)
  encodings = {p: rng.standard_normal((77, c["text_dim"])).astype(np.float32) for p in ("", "lions roaring")}
  spec = dataclasses.replace(run_spec.recipe(), frame_size=(c["size"], c["size"]),
                             autoencoder_factor=autoencoder_factor(vae))
  return Models(unet=unet, autoencoder=vae, audio_encoder=audio, text_encodings=encodings, spec=spec)


def clips(name: str, batch: int, seed: int = 0):
  from asva_jax.pipeline import Clip
  rng = np.random.default_rng(seed)
  size = CONFIGS[name]["size"]
  t = np.arange(32000) / 16000
  return [Clip(rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
               (0.3 * np.sin(2 * np.pi * (220 + 110 * k) * t)).astype(np.float32), "lions roaring")
          for k in range(batch)]


def speed(name: str, batch: int, fv) -> None:
  from asva_jax.pipeline import sample
  models = build(name, jnp.dtype(fv.dtype), fv.seed)
  cs = clips(name, batch)
  run = lambda: sample(models, cs, num_inference_steps=fv.steps, audio_guidance=4.0)  # noqa: E731
  start = time.perf_counter()
  run()
  first = time.perf_counter() - start
  times = []
  for _ in range(fv.runs):
    start = time.perf_counter()
    run()
    times.append(time.perf_counter() - start)
  t = statistics.median(times)
  print(f"{name:7s} batch {batch:2d} {fv.dtype}: compile ~{first - t:6.1f} s, {t:7.2f} s per call, "
        f"{t / batch:6.2f} s per clip, {batch / t:6.2f} clips/s  [{jax.devices()[0].device_kind}]", flush=True)


def bf16_drift(name: str, fv) -> None:
  from asva_jax.pipeline import sample
  cs = clips(name, 1)
  out = {}
  for dtype in ("float32", "bfloat16"):
    models = build(name, jnp.dtype(dtype), fv.seed)
    out[dtype] = sample(models, cs, num_inference_steps=fv.steps, audio_guidance=4.0, return_latents=True)
  (f32, z32), (b16, z16) = out["float32"], out["bfloat16"]
  z32, z16 = np.asarray(z32, np.float64), np.asarray(z16, np.float64)
  rel = np.linalg.norm((z16 - z32)[:, 1:]) / np.linalg.norm(z32[:, 1:])
  diff = np.abs(f32.astype(np.int16) - b16.astype(np.int16))
  print(f"{name}: bfloat16 vs float32 after {fv.steps} PNDM steps: relative L2 of the latents {rel:.4f}, "
        f"frames mean |Δ| {diff.mean():.2f} / 255, max {diff.max()}")


def synthetic_inputs(models, seconds: float, fv):
  """A synthetic video's first frame at the model's size, its class's audio events for `seconds`,
  and the class prompt (data_prep.synthetic, the data the tiny training config uses)."""
  from asva_jax.pipeline import inputs
  from asva_jax.pipeline.loading import frame_size
  from asva_jax.prep.synthetic import class_spec, make_clip
  size = frame_size(models)
  parts, k = [], 0
  while sum(len(p) for p in parts) < seconds * 16000:
    clip = make_clip(fv.seed, 0, 100 + k, height=48, width=64, fps=6, sample_rate=16000)
    parts.append(clip.audio.mean(axis=0))
    k += 1
  first = make_clip(fv.seed, 0, 100, height=48, width=64, fps=6, sample_rate=16000).frames[0]
  audio = np.concatenate(parts)[:int(seconds * 16000)].astype(np.float32)
  prompt = class_spec(0).prompt
  return inputs.prepare_image(first, size), audio, prompt


def long_audio_figures(name: str, fv) -> None:
  from asva_jax.pipeline import long_audio
  if fv.ckpt:
    from asva_jax.pipeline import load_models
    models = load_models(fv.ckpt, dtype=jnp.dtype(fv.dtype))
    image, audio, prompt = synthetic_inputs(models, fv.seconds, fv)
    name = f"{fv.ckpt} (step {getattr(models, 'step', None)})"
  else:
    models = build(name, jnp.dtype(fv.dtype), fv.seed)
    rng = np.random.default_rng(fv.seed)
    t = np.arange(int(fv.seconds * 16000)) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 330 * t) * (1 + np.sin(2 * np.pi * 0.7 * t))
             + 0.05 * rng.standard_normal(len(t))).astype(np.float32)
    image, prompt = clips(name, 1)[0].image, "lions roaring"
  for mode in long_audio.MODES:
    start = time.perf_counter()
    video, starts = long_audio.animate(models, image, audio, prompt, mode=mode, batch_size=4,
                                       num_inference_steps=fv.steps, audio_guidance=4.0, progress=False)
    seams = long_audio.seam_indices(starts, 12, len(video))
    s = long_audio.seam_smoothness(video, seams)
    d = long_audio.drift(video, image, seams)
    print(f"{name} {mode:10s}: {len(starts)} windows, {len(video)} frames in {time.perf_counter() - start:.0f} s; "
          f"seam {s['seam']:.4f} vs inside {s['inside']:.4f} (ratio {s['ratio']:.2f}); drift of window ends "
          f"first {d[0]:.3f}, last {d[-1]:.3f}, max {max(d):.3f}: {' '.join(f'{x:.3f}' for x in d)}", flush=True)


def main(argv, fv: flags.FlagValues = flags.FLAGS):
  del argv
  for name in fv.config:
    if fv.long_audio:
      long_audio_figures(name, fv)
    elif fv.bf16_drift:
      bf16_drift(name, fv)
    else:
      for b in fv.batch:
        speed(name, int(b), fv)


if __name__ == "__main__":
  runner.run(main, define_flags=define_flags)
