"""Speed and XLA FLOP count of the video UNet (`AudioUNet3D`), forward and optionally backward.

    python -m benchmarks.unet_forward [--size small|full] [--batch 1,2] [--dtype float32,bfloat16]
        [--attention auto] [--latent 32] [--frames 12] [--runs 5] [--backward [--remat both]]
        [--flops-only [--compile]]

Every combination of the list flags (batch, dtype, attention) is one row of the table. A row
reports the jitted call's median time over `--runs` calls after one warm-up call, that time
per 12-frame clip, lower+compile time, FLOPs per call from XLA's cost analysis of the compiled
program, and the achieved FLOP/s. Parameters are jit arguments (never baked-in constants), so
the count is the UNet's own work. `--backward` times `value_and_grad` of an ε-MSE loss over the
trainable `_temp`/`_audio` parameters (the AVSyncD training step minus the optimiser), with
rematerialisation off and/or on. `--flops-only` builds the model abstractly (`nnx.eval_shape`,
no weights in memory) and only lowers the program: the FLOPs then come from the unoptimised
HLO (add `--compile` to compile it too, which also gives XLA's memory estimate).
Random weights and inputs; no assertions.
"""

from __future__ import annotations

import itertools
import statistics
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging
from flax import nnx

from asva_jax.commands import runner
from asva_jax.audio import segment_masks
from asva_jax.models.unet_3d import build_unet, trainable
from asva_jax.models.unet_config import CROSS_ATTN_DOWN, CROSS_ATTN_UP, DEFAULT_CONFIG, MID, RES_DOWN, RES_UP

def define_flags(fv: flags.FlagValues = flags.FLAGS) -> None:
  flags.DEFINE_enum("size", None, ["small", "full"],
                    "UNet size; default: small on CPU, full (AVSyncD/SD1.5, 1.17 B parameters) elsewhere",
                    flag_values=fv)
  flags.DEFINE_list("batch", ["1"], "batch sizes (videos per call)", flag_values=fv)
  flags.DEFINE_list("dtype", ["float32"], "compute dtypes: float32 and/or bfloat16", flag_values=fv)
  flags.DEFINE_enum("param_dtype", "float32", ["float32", "bfloat16"], "parameter storage dtype",
                    flag_values=fv)
  flags.DEFINE_list("attention", ["auto"], "attention implementations: auto, xla, cudnn, reference",
                    flag_values=fv)
  flags.DEFINE_integer("latent", 32, "latent height = width (32 = 256x256 video)", flag_values=fv)
  flags.DEFINE_integer("frames", 12, "frames per clip", flag_values=fv)
  flags.DEFINE_integer("runs", 5, "timed calls per row (after one warm-up call)", flag_values=fv)
  flags.DEFINE_bool("backward", False, "time value_and_grad over the trainable parameters, not the forward",
                    flag_values=fv)
  flags.DEFINE_enum("remat", "both", ["both", "off", "on"], "rematerialisation in --backward rows",
                    flag_values=fv)
  flags.DEFINE_bool("flops_only", False, "abstract model, lower only: FLOPs without weights or execution",
                    flag_values=fv)
  flags.DEFINE_alias("flops-only", "flops_only", flag_values=fv)
  flags.DEFINE_bool("compile", False, "with --flops_only: compile too (compile time, memory estimate)",
                    flag_values=fv)
  flags.DEFINE_integer("seed", 0, "seed of weights and inputs", flag_values=fv)


TEXT_TOKENS, AUDIO_TOKENS, CONTEXT_DIM = 77, 229, 768
# Four levels with every block type of the full model (audio/text/temporal cross-attention
# down, resnet-only down, audio mid block, and the mirrored up blocks) at a CPU-friendly width.
# `attention_head_dim` is a head count (the SD1.5 naming quirk): 16-wide heads, as 8 heads of
# width 4 make CPU time go to the softmax instead of the matmuls.
SMALL_CONFIG: dict[str, Any] = dict(
    block_out_channels=[32, 64, 64, 64], layers_per_block=2, attention_head_dim=[2, 4, 4, 4],
    norm_num_groups=32,
    cross_attention_dim=CONTEXT_DIM, audio_cross_attention_dim=CONTEXT_DIM,
    down_block_types=[CROSS_ATTN_DOWN[0]] * 3 + [RES_DOWN[0]], mid_block_type=MID[0],
    up_block_types=[RES_UP[0]] + [CROSS_ATTN_UP[0]] * 3)
CONFIGS = {"small": SMALL_CONFIG, "full": DEFAULT_CONFIG}


def xla_flops(stage) -> float:
  """FLOPs from a Lowered/Compiled stage: cost_analysis() is a dict, or a list of per-module dicts."""
  cost = stage.cost_analysis()
  if cost is None:
    return float("nan")
  if isinstance(cost, dict):
    cost = [cost]
  return float(sum(c.get("flops", 0.0) for c in cost))


def temp_bytes(compiled) -> float:
  try:
    return float(compiled.memory_analysis().temp_size_in_bytes)
  except Exception:  # not every backend / version reports it
    return float("nan")


def param_counts(state: nnx.State) -> tuple[int, int]:
  """(all parameters, trainable `_temp`/`_audio` parameters)."""
  total = train = 0
  for path, leaf in nnx.to_flat_state(state):
    if not isinstance(leaf, nnx.Param):
      continue
    n = int(np.prod(leaf.get_value().shape))
    total += n
    train += n if trainable(path) else 0
  return total, train


def make_inputs(batch: int, frames: int, latent: int, dtype, abstract: bool, seed: int) -> tuple:
  """(sample, timestep, text, audio, mask): per-video text/audio contexts, real 12-segment masks."""
  mask = segment_masks(frames)
  if mask.shape[1] != AUDIO_TOKENS:
    raise ValueError(f"segment_masks gave {mask.shape[1]} audio tokens, expected {AUDIO_TOKENS}")
  shapes = [((batch, frames, latent, latent, 4), dtype), ((batch,), jnp.int32),
            ((batch, TEXT_TOKENS, CONTEXT_DIM), dtype), ((batch, AUDIO_TOKENS, CONTEXT_DIM), dtype)]
  if abstract:
    return tuple(jax.ShapeDtypeStruct(s, d) for s, d in shapes) + (jax.ShapeDtypeStruct(mask.shape, bool),)
  rng = np.random.default_rng(seed)
  sample, _, text, audio = (jnp.asarray(rng.standard_normal(s, np.float32), d) for s, d in shapes)
  timestep = jnp.asarray(rng.integers(0, 1000, (batch,)), jnp.int32)
  return sample, timestep, text, audio, jnp.asarray(mask)


def forward_fn(graph) -> Callable:
  def forward(state, sample, timestep, text, audio, mask):
    return nnx.merge(graph, state)(sample, timestep, text, audio, mask)
  return forward


def train_grad_fn(graph) -> Callable:
  """ε-MSE loss and its gradient w.r.t. the trainable parameters only (`nnx.DiffState`)."""
  def loss_fn(model, sample, timestep, text, audio, mask):
    pred = model(sample, timestep, text, audio, mask).astype(jnp.float32)
    return jnp.mean((pred - sample.astype(jnp.float32)) ** 2)

  def step(state, sample, timestep, text, audio, mask):
    model = nnx.merge(graph, state)
    grad = nnx.value_and_grad(loss_fn, argnums=nnx.DiffState(0, trainable))
    return grad(model, sample, timestep, text, audio, mask)
  return step


def time_calls(fn: Callable, args: tuple, runs: int) -> float:
  """Median seconds per call after one warm-up call."""
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(runs):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def bench_row(config: dict, weights: nnx.State, *, batch: int, dtype: str, attention: str, remat: bool,
              backward: bool, flops_only: bool, compile_abstract: bool, fv) -> dict:
  """One table row. The options add no variables, so every row reuses the same `weights`
  (concrete, or abstract with `flops_only`) under its own abstract graph: one slow eager init."""
  model = build_unet(config, abstract=True, seed=fv.seed, dtype=jnp.dtype(dtype),
                     param_dtype=jnp.dtype(fv.param_dtype), attention=attention, remat=remat)
  graph, own = nnx.split(model)
  if jax.tree.structure(own) != jax.tree.structure(weights):
    raise ValueError(f"UNet variables differ with dtype={dtype}, attention={attention}, remat={remat}")
  state = weights
  params, train_params = param_counts(state)
  inputs = make_inputs(batch, fv.frames, fv.latent, jnp.dtype(dtype), flops_only, fv.seed + 1)
  fn = jax.jit(train_grad_fn(graph) if backward else forward_fn(graph))
  row = dict(batch=batch, dtype=dtype, attention=attention, remat=remat if backward else None,
             params=params, trainable=train_params, seconds=float("nan"), compile=float("nan"),
             temp=float("nan"))

  start = time.perf_counter()
  lowered = fn.lower(state, *inputs)
  if flops_only and not compile_abstract:
    row.update(compile=time.perf_counter() - start, flops=xla_flops(lowered), flops_from="lowered")
    return row
  compiled = lowered.compile()
  row.update(compile=time.perf_counter() - start, flops=xla_flops(compiled), flops_from="compiled",
             temp=temp_bytes(compiled))
  if not flops_only:
    row["seconds"] = time_calls(compiled, (state,) + inputs, fv.runs)
  return row


def fmt(x: float, scale: float = 1.0, spec: str = ".3f") -> str:
  return "-" if x is None or np.isnan(x) else format(x / scale, spec)


def print_table(rows: list[dict], frames: int) -> None:
  header = ["batch", "dtype", "attention", "remat", "s/call", f"s/{frames}f clip", "lower+compile s",
            "GFLOP/call", "GFLOP/s", "temp GiB", "flops from"]
  lines = []
  for r in rows:
    per_clip = r["seconds"] / r["batch"]
    remat = "-" if r["remat"] is None else str(r["remat"])
    lines.append([str(r["batch"]), r["dtype"], r["attention"], remat,
                  fmt(r["seconds"]), fmt(per_clip), fmt(r["compile"], spec=".1f"), fmt(r["flops"], 1e9, ".1f"),
                  fmt(r["flops"] / r["seconds"], 1e9, ".1f"), fmt(r["temp"], 2**30, ".2f"), r["flops_from"]])
  widths = [max(len(h), *(len(l[i]) for l in lines)) for i, h in enumerate(header)]
  for line in [header] + lines:
    print("  ".join(c.rjust(w) for c, w in zip(line, widths)))


def parse_list(values: list[str], allowed: tuple[str, ...], name: str) -> list[str]:
  bad = [v for v in values if v not in allowed]
  if bad:
    raise app.UsageError(f"--{name}: {bad} not in {allowed}")
  return values


def main(argv, fv: flags.FlagValues = flags.FLAGS):
  backend = jax.default_backend()
  size = fv.size or ("small" if backend == "cpu" else "full")
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    batches = [int(b) for b in fv.batch]
  except ValueError:
    raise app.UsageError(f"--batch {','.join(fv.batch)}: expected positive integers") from None
  if not batches or min(batches) < 1:
    raise app.UsageError(f"--batch {','.join(fv.batch)}: expected positive integers")
  for flag, low in (("latent", 8), ("frames", 1), ("runs", 1)):
    if fv[flag].value < low:
      raise app.UsageError(f"--{flag} {fv[flag].value}: must be at least {low}")
  if fv.latent % 8:
    raise app.UsageError(f"--latent {fv.latent}: must be a multiple of 8 (the UNet halves it 3 times)")
  dtypes = parse_list(fv.dtype, ("float32", "bfloat16"), "dtype")
  attentions = parse_list(fv.attention, ("auto", "xla", "cudnn", "reference"), "attention")
  remats = {"both": [False, True], "off": [False], "on": [True]}[fv.remat] if fv.backward else [False]
  if size == "full" and backend == "cpu" and not fv.flops_only:
    logging.warning("full-size UNet on CPU: 1.17 B parameters (%.1f GB in %s) and minutes per call; "
                    "consider --flops-only", 1.17 * jnp.dtype(fv.param_dtype).itemsize, fv.param_dtype)
  print(f"backend: {backend} ({jax.devices()[0].device_kind}); UNet {size}; "
        f"{'value_and_grad over trainable params' if fv.backward else 'forward'}; "
        f"latent {fv.latent}x{fv.latent} ({8 * fv.latent}px), {fv.frames} frames; "
        f"param dtype {fv.param_dtype}; " + ("abstract, no execution" if fv.flops_only
                                                 else f"median of {fv.runs} runs"), flush=True)
  start = time.perf_counter()
  weights = nnx.split(build_unet(CONFIGS[size], abstract=fv.flops_only, seed=fv.seed,
                                 param_dtype=jnp.dtype(fv.param_dtype)))[1]
  print(f"  built {'abstract ' if fv.flops_only else ''}weights in {time.perf_counter() - start:.1f} s",
        flush=True)
  rows = []
  for batch, dtype, attention, remat in itertools.product(batches, dtypes, attentions, remats):
    rows.append(bench_row(CONFIGS[size], weights, batch=batch, dtype=dtype, attention=attention, remat=remat,
                          backward=fv.backward, flops_only=fv.flops_only,
                          compile_abstract=fv.compile, fv=fv))
    print(f"  done: batch {batch} {dtype} {attention}" + (f" remat={remat}" if fv.backward else ""),
          flush=True)
  print(f"parameters: {rows[0]['params'] / 1e6:.2f} M, trainable (_temp/_audio): "
        f"{rows[0]['trainable'] / 1e6:.2f} M")
  print_table(rows, fv.frames)


if __name__ == "__main__":
  runner.run(main, define_flags=define_flags)
