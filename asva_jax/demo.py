r"""The built-in default job: synthetic audio-visual videos -> shards -> loader -> the AVSyncD
training objective (VAE latents, ImageBind audio tokens, video UNet) on CPU.

    python -m asva_jax.demo --config configs/demo.py

It proves the pieces fit together end to end on any machine; with
`--config.model.checkpoint=CKPT` it runs the converted real models instead of
tiny random ones.
"""

from __future__ import annotations

import itertools
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, logging
from flax import nnx
from tqdm import tqdm

from asva_jax import command

# The repository's configs/demo.py, found from this file so the demo runs from any directory.
_CONFIG = command.define_config_file(
    "config", str(Path(__file__).resolve().parent.parent / "configs" / "demo.py"), "Demo configuration.")


def prepare_data(cfg) -> Path:
  """Synthetic videos and their shards under the workdir (both reused when present)."""
  from data_prep.build import BuildConfig, build
  from data_prep.synthetic import write_dataset
  work = Path(cfg.workdir)
  raw = work / "synthetic"
  if not (raw / "events.json").is_file():
    h, w = cfg.data.source_size
    write_dataset(raw, cfg.data.num_classes, cfg.data.videos_per_class, cfg.seed, height=h, width=w)
    sys.stderr.flush()
  shards = work / "shards"
  summary = build(BuildConfig(dataset="avsync15", root=str(raw), split="train", out=str(shards),
                              size=tuple(cfg.data.size), name="synthetic"), num_workers=0)
  print(f"shards: {summary['num_written']} of {summary['num_listed']} videos in {shards} "
        f"({summary['num_skipped']} skipped)", flush=True)
  return shards


def build_models(cfg, prompts: list[str]):
  """(unet, vae, audio_encoder, prompt -> text encoding)."""
  dtype = jnp.dtype(cfg.model.dtype)
  if cfg.model.checkpoint:
    import asva_jax
    from asva_jax.models.clip_tokenizer import encode_prompts, load_tokenizer
    ckpt = cfg.model.checkpoint
    text_encoder = asva_jax.load_text_encoder(ckpt)
    encodings = encode_prompts(text_encoder, load_tokenizer(ckpt), prompts)
    return (asva_jax.load_unet(ckpt, dtype=dtype), asva_jax.load_vae(ckpt, dtype=dtype),
            asva_jax.load_audio_encoder(ckpt), dict(zip(prompts, encodings)))
  from asva_jax.models.imagebind_audio import build_audio_encoder
  from asva_jax.models.unet_3d import build_unet
  from asva_jax.models.vae import AutoencoderKL, VAEConfig
  unet = build_unet(dict(cfg.model.unet), seed=cfg.seed, dtype=dtype)
  vae = AutoencoderKL(VAEConfig(**{k: tuple(v) if isinstance(v, (list, tuple)) else v
                                   for k, v in cfg.model.vae.items()}), rngs=nnx.Rngs(cfg.seed + 1))
  audio_encoder = build_audio_encoder(dict(cfg.model.audio_encoder), seed=cfg.seed + 2)
  rng = np.random.default_rng(cfg.seed)
  dim = cfg.model.unet["cross_attention_dim"]
  # Stand-ins for the precomputed per-class CLIP encodings (class_clip_text_encodings_*.pt).
  encodings = {p: rng.standard_normal((77, dim)).astype(np.float32) for p in prompts}
  return unet, vae, audio_encoder, encodings


def count(module) -> int:
  return sum(int(np.prod(v.shape)) for v in jax.tree.leaves(nnx.state(module, nnx.Param)))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)
  cfg = _CONFIG.value
  from asva_jax.audio import segment_masks
  from asva_jax.data import train_loader
  from asva_jax.objective import diffusion_loss
  from asva_jax.schedulers.noise_schedule import scaled_linear_alphas_cumprod

  t0 = time.perf_counter()
  shards = prepare_data(cfg)
  loader = train_loader(shards, cfg.data.batch_size, name="synthetic", seed=cfg.seed)
  batches = list(itertools.islice(iter(loader), cfg.data.num_batches))
  for batch in batches:
    batch["prompt"] = [p.decode() if isinstance(p, bytes) else str(p) for p in batch["prompt"]]
  prompts = sorted({p for b in batches for p in b["prompt"]})
  print(f"data ready in {time.perf_counter() - t0:.1f} s: batch video {batches[0]['video'].shape} "
        f"{batches[0]['video'].dtype}, mel {batches[0]['mel'].shape}", flush=True)

  unet, vae, audio_encoder, encodings = build_models(cfg, prompts)
  print(f"models: unet {count(unet):,} params, vae {count(vae):,}, audio encoder {count(audio_encoder):,}",
        flush=True)
  alphas = jnp.asarray(scaled_linear_alphas_cumprod(cfg.diffusion.num_train_timesteps))
  masks = jnp.asarray(segment_masks())

  @nnx.jit
  def loss_fn(unet, vae, audio_encoder, video, mel, text, key):
    return diffusion_loss(unet, vae, audio_encoder, video, mel, text, masks, alphas, key,
                          scaling_factor=cfg.diffusion.scaling_factor,
                          audio_drop_prob=cfg.diffusion.audio_drop_prob)

  key = jax.random.key(cfg.seed)
  bar = tqdm(batches, desc="diffusion loss", unit="batch", file=sys.stdout)
  for i, batch in enumerate(bar):
    text = np.stack([encodings[p] for p in batch["prompt"]])
    start = time.perf_counter()
    loss = float(loss_fn(unet, vae, audio_encoder, batch["video"], batch["mel"], text,
                         jax.random.fold_in(key, i)))
    tqdm.write(f"batch {i}: {batch['prompt']} loss {loss:.4f} "
               f"({time.perf_counter() - start:.1f} s{' incl. compile' if i == 0 else ''})")
    if not np.isfinite(loss):
      raise SystemExit(f"non-finite loss {loss} on batch {i}")
  bar.close()
  print(f"done in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
  command.run(main)
