r"""The full AVSyncD optimizer step (gradient + clipping + AdamW), timed: what training costs.

    python -m benchmarks.train_step [--size tiny|medium|full] [--batch 1,2] [--remat none,full]
        [--compute float32|bfloat16] [--frozen float32|bfloat16] [--steps 5] [--flops_only] [--latents]

One row per (batch, remat): median step time over `--steps` steps after a warm-up,
clips/s, FLOPs per step and their source (the lowered, platform-independent HLO,
see asva_jax.training.flops), TFLOP/s per device, MFU (when the device's peak is
known), XLA's memory analysis of the compiled step (arguments, temporaries,
outputs) and, on accelerators, the allocator's peak. The step is the one
`python -m asva_jax.train` runs, built by the trainer's own asva_jax.training.program,
on random models and random inputs (frames through the VAE or space-to-depth, as
configured, or with `--latents` cached VAE moments as `data_prep.build --vae-latents`
stores them; the mel through the audio encoder). Sizes: tiny = configs/tiny.py;
medium = every block type at a quarter of SD1.5's width with a small VAE and ImageBind,
128 x 128 frames; full = AVSyncD (SD1.5 UNet + VAE, ImageBind-Huge), 256 x 256, recipe trainable set.
Prints figures, asserts nothing.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import jax
import numpy as np
from absl import app, flags, logging

from asva_jax.commands import runner
from asva_jax.parallel import sharding
from asva_jax.training.flops import SOURCE, peak_flops, step_flops

REPO = Path(__file__).resolve().parent.parent
def define_flags(fv: flags.FlagValues = flags.FLAGS) -> None:
  flags.DEFINE_enum("size", "tiny", ["tiny", "medium", "full"], "model size", flag_values=fv)
  flags.DEFINE_list("batch", ["2"], "global clips per step", flag_values=fv)
  flags.DEFINE_list("remat", ["none"], "remat settings: none, full or a jax.checkpoint_policies name",
                    flag_values=fv)
  flags.DEFINE_string("compute", None, "compute dtype (default: float32 on CPU, bfloat16 elsewhere)",
                      flag_values=fv)
  flags.DEFINE_string("frozen", None, "frozen-weight dtype (default: as compute)", flag_values=fv)
  flags.DEFINE_integer("steps", 5, "timed steps per row", flag_values=fv)
  flags.DEFINE_integer("fsdp", 1, "fsdp axis size of the mesh", flag_values=fv)
  flags.DEFINE_bool("flops_only", False, "lower and compile only: FLOPs and memory, no execution",
                    flag_values=fv)
  flags.DEFINE_bool("latents", False, "cached VAE moments as input (data.use_vae_latents) instead of frames",
                    flag_values=fv)


def size_config(size: str):
  """(config, frame size) of a size: tiny, tiny:one_level (configs/tiny.py's variant), medium, full."""
  from asva_jax.training.defaults import base_config
  size, _, variant = size.partition(":")
  if size == "tiny":
    import importlib.util
    spec = importlib.util.spec_from_file_location("tiny", REPO / "configs" / "tiny.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(variant or None), (32, 32)
  c = base_config()
  c.model.trainable = "temp_audio"
  if size == "medium":
    c.model.unet = dict(block_out_channels=[80, 160, 320, 320], layers_per_block=2, attention_head_dim=8,
                        norm_num_groups=16, cross_attention_dim=192, audio_cross_attention_dim=192)
    c.model.vae = dict(block_out_channels=[32, 64, 64, 64], layers_per_block=1, norm_num_groups=16)
    c.model.audio_encoder = dict(embed_dim=192, num_blocks=4, num_heads=4, out_embed_dim=192)
    return c, (128, 128)
  c.model.unet = dict(cross_attention_dim=768, audio_cross_attention_dim=768)
  c.model.vae = {}
  c.model.audio_encoder = dict(embed_dim=1280, num_blocks=32, num_heads=16, out_embed_dim=1024)
  return c, (256, 256)


def compile_step(config, frame_size, batch: int, remat: str, *, latents: bool = False):
  """(compiled step, its arguments, row): the trainer's step (asva_jax.training.program) on random
  models and inputs, lowered and compiled; the row holds the sizes, compile time, FLOPs, XLA's
  memory analysis (`xla_peak_gib` = what the step needs on a device) and the attention kernel."""
  from asva_jax.models.attention import kernels_in
  from asva_jax.training.build import build_models
  from asva_jax.training.memory import peak_bytes
  from asva_jax.training.program import batch_shapes, build_program
  from asva_jax.training.state import count_params
  config.remat = remat
  config.train.batch_size = batch
  model = build_models(config).model
  shapes = batch_shapes(model, batch, frame_size, latents=latents)
  program, state, frozen = build_program(model, config, sharding.make_mesh(config.mesh))
  del model
  rng = np.random.default_rng(0)
  local = {k: (rng.integers(0, 256, v.shape, dtype=np.uint8) if v.dtype == np.uint8
               else rng.standard_normal(v.shape).astype(v.dtype)) for k, v in shapes.items()}
  gb = sharding.global_batch(local, program.mesh)
  t0 = time.perf_counter()
  lowered = program.step.lower(state, frozen, gb)
  flops = step_flops(lowered, int(config.train.grad_accum))
  compiled = lowered.compile()
  row = {"batch": batch, "remat": remat, "trainable": count_params(state["params"]),
         "frozen": count_params(frozen), "compile_s": time.perf_counter() - t0,
         "gflop_per_step": flops / 1e9 if flops else None, "attention": kernels_in(compiled.as_text())}
  mem = compiled.memory_analysis()
  if mem is not None:
    row.update(args_gib=mem.argument_size_in_bytes / 2**30, temp_gib=mem.temp_size_in_bytes / 2**30,
               out_gib=mem.output_size_in_bytes / 2**30, xla_peak_gib=peak_bytes(compiled) / 2**30)
  return compiled, (state, frozen, gb), row


def time_step(compiled, args, row: dict, steps: int) -> dict:
  """`row` with the median time of `steps` steps after a warm-up one, clips/s, TFLOP/s per device,
  MFU (where the device's peak is known) and the allocator's peak (accelerators)."""
  state, frozen, gb = args
  state, m = compiled(state, frozen, gb)
  jax.block_until_ready(m)
  times = []
  for _ in range(steps):
    t = time.perf_counter()
    state, m = compiled(state, frozen, gb)
    jax.block_until_ready(m)
    times.append(time.perf_counter() - t)
  step_s = statistics.median(times)
  row = dict(row, step_s=step_s, clips_per_s=row["batch"] / step_s, loss=float(m["loss"]))
  if row.get("gflop_per_step"):
    per_device = row["gflop_per_step"] * 1e9 / step_s / jax.device_count()
    row["tflops_per_device"] = per_device / 1e12
    peak = peak_flops()
    row["mfu"] = per_device / peak if peak else None
  stats = jax.devices()[0].memory_stats() or {}
  if "peak_bytes_in_use" in stats:
    row["peak_gib"] = stats["peak_bytes_in_use"] / 2**30
  return row


def bench(config, frame_size, batch: int, remat: str, fv):
  compiled, args, row = compile_step(config, frame_size, batch, remat, latents=fv.latents)
  return row if fv.flops_only else time_step(compiled, args, row, fv.steps)


def sized_config(size: str, compute: str | None = None, frozen: str | None = None, fsdp: int = 1):
  """(config, frame size) of `size` in `compute` (default: float32 on CPU, bfloat16 elsewhere)."""
  config, frame_size = size_config(size)
  compute = compute or ("float32" if jax.default_backend() == "cpu" else "bfloat16")
  config.precision.compute = compute
  config.precision.frozen = frozen or compute
  config.mesh.fsdp = fsdp
  return config, frame_size


def main(argv, fv: flags.FlagValues = flags.FLAGS):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)
  print(f"devices: {jax.device_count()} x {jax.devices()[0].device_kind}; size {fv.size}; "
        f"FLOPs: {SOURCE}")
  for batch in (int(b) for b in fv.batch):
    for remat in fv.remat:
      config, frame_size = sized_config(fv.size, fv.compute, fv.frozen, fv.fsdp)
      row = bench(config, frame_size, batch, remat, fv)
      print("  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
            flush=True)


if __name__ == "__main__":
  runner.run(main, define_flags=define_flags)
