r"""Compile the real train step for a TPU topology on this (CPU) machine: per-chip memory and FLOPs.

    pip install 'asva-jax[tpu]'     # libtpu, the version jax pins (not needed for anything else)
    python -m benchmarks.tpu_compile --config configs/avsyncd.py --topology v5e:2x4 \
        --batch_per_chip 4 --remat full [--fsdp 8] [--frozen bfloat16] [--latents]

    python -m benchmarks.tpu_compile --topology v5e:2x4 --search [--remats none,full,best] \
        [--max_batch 64] [--json OUT.json]

`--search` finds, per remat setting, the largest batch per chip whose compiled step fits the
chip's HBM (`largest_fitting`: two compilations give the need per clip, a linear prediction is
checked by compiling it and one more; bisection where the prediction misses); `best` is the
policy of asva_jax.training.memory.REMAT_POLICIES that fits the most clips.

JAX compiles ahead of time for a TPU topology without a TPU
(`jax.experimental.topologies`): the model is abstract (shapes only, no weights),
every input is a ShapeDtypeStruct carrying its sharding on the topology's mesh,
and `jit(step).lower(...).compile()` gives XLA's memory analysis per chip
(arguments, temporaries, outputs) and the FLOPs. The step is the one
`python -m asva_jax.train` runs, built by the same function
(asva_jax.training.program): gradient over the trainable set, clipping, AdamW, the
audio encoder and the VAE encoding of the frames inside, or with `--latents` the
cached VAE moments as input instead (shards built with `--vae-latents`). Model sizes
come from the config (SD1.5 and ImageBind-Huge where it leaves them empty, as for a
converted checkpoint). Prints figures, asserts nothing.
"""

from __future__ import annotations

import copy
import os
import time
from pathlib import Path

from absl import app, flags, logging

from asva_jax.commands import runner
from asva_jax.errors import AsvaError

REPO = Path(__file__).resolve().parent.parent
def define_flags(fv: flags.FlagValues = flags.FLAGS) -> None:
  runner.define_config_file("config", str(REPO / "configs" / "avsyncd.py"), "Training config.", flag_values=fv)
  flags.DEFINE_string("topology", "v5e:2x4", "TPU topology, e.g. v5e:2x4, v5p:2x2x1, v6e:2x4", flag_values=fv)
  flags.DEFINE_integer("batch_per_chip", 4, "clips per chip per micro-batch", flag_values=fv)
  flags.DEFINE_string("remat", None, "override config.remat", flag_values=fv)
  flags.DEFINE_integer("fsdp", None, "override config.mesh.fsdp (default: all chips)", flag_values=fv)
  flags.DEFINE_string("frozen", None, "override config.precision.frozen", flag_values=fv)
  flags.DEFINE_integer("frame_size", 256, "frame height = width", flag_values=fv)
  flags.DEFINE_bool("latents", False, "cached VAE moments as input (data_prep.build --vae-latents, "
                    "data.use_vae_latents) instead of frames through the VAE encoder", flag_values=fv)
  flags.DEFINE_bool("search", False, "find the largest batch per chip that fits, per --remats", flag_values=fv)
  flags.DEFINE_list("remats", ["none", "full", "best"], "--search: remat settings (none, full, a policy "
                    "name, or best = every policy of asva_jax.training.memory.REMAT_POLICIES)", flag_values=fv)
  flags.DEFINE_integer("max_batch", 64, "--search: largest batch per chip tried", flag_values=fv)
  flags.DEFINE_string("json", None, "--search: also write the results to this JSON file", flag_values=fv)


HBM_GIB = {"v5e": 15.75, "v5 lite": 15.75, "v5p": 95.74, "v6e": 31.25, "v6 lite": 31.25, "v4": 32.0}


def lower(config, devices, *, fsdp: int, batch_per_chip: int, frame_size: int, latents: bool):
  """(lowered step, description) for `devices` (a topology's, or any): the trainer's own program
  (asva_jax.training.program) on abstract models, with an abstract batch sharded over the mesh."""
  from asva_jax.parallel import sharding
  from asva_jax.training.program import abstract_batch, abstract_models, batch_shapes, build_program
  from asva_jax.training.state import count_params
  n = len(devices)
  config.mesh.data, config.mesh.fsdp = -1, fsdp
  mesh = sharding.make_mesh(config.mesh, devices)
  model = abstract_models(config)
  b = batch_per_chip * n * int(config.train.grad_accum)
  batch = abstract_batch(batch_shapes(model, b, (frame_size, frame_size), latents=latents), mesh)
  program, state, frozen = build_program(model, config, mesh)
  inputs = "cached VAE latents" if latents else f"frames through the {config.model.autoencoder}"
  about = (f"{n} chips ({devices[0].device_kind}), mesh data={n // fsdp} fsdp={fsdp}; {batch_per_chip} "
           f"clips/chip, global batch {b}; {inputs}; remat {config.remat}; frozen "
           f"{config.precision.frozen}; {count_params(state['params']):,} trainable, "
           f"{count_params(frozen):,} frozen")
  return program.step.lower(state, frozen, batch), about


def largest_fitting(need, limit: int, max_batch: int) -> tuple[int, dict[int, int | None]]:
  """(largest b in 1..max_batch with need(b) <= limit, 0 if none; every need probed).

  need(b): bytes, or None where the compiler refused (out of memory). The need grows about
  linearly with b, so after two fitting probes the next is the linear prediction; otherwise
  doubling; after a miss, bisection between the largest fit and the smallest miss.
  """
  needs: dict[int, int | None] = {}
  fits = lambda b: needs[b] is not None and needs[b] <= limit  # noqa: E731
  lo, hi = 0, max_batch + 1
  while hi - lo > 1:
    ok = sorted(b for b in needs if fits(b))
    if not needs:
      b = 1
    elif hi <= max_batch:  # a miss is known: bisect
      b = (lo + hi) // 2
    elif len(ok) >= 2 and needs[ok[-1]] > needs[ok[-2]]:  # no miss yet: the linear prediction
      slope = (needs[ok[-1]] - needs[ok[-2]]) / (ok[-1] - ok[-2])
      b = min(max(ok[-1] + int((limit - needs[ok[-1]]) // slope), lo + 1), max_batch)
    else:
      b = min(2 * lo, max_batch)
    needs[b] = need(b)
    if fits(b):
      lo = b
      if b == max_batch:
        break
    else:
      hi = b
  return lo, needs


def topology_devices(topology: str):
  generation = topology.split(":")[0]
  os.environ.setdefault("TPU_ACCELERATOR_TYPE", f"{generation}-8")
  os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
  from jax.experimental import topologies
  try:
    return topologies.get_topology_desc(topology_name=topology, platform="tpu").devices
  except (RuntimeError, ValueError) as e:  # no libtpu, or a topology it does not know
    raise AsvaError(f"--topology {topology}: {str(e).splitlines()[0]} (the TPU compiler comes "
                    f"with pip install -e '.[tpu]')") from None


def hbm_gib(topology: str) -> float | None:
  generation = topology.split(":")[0]
  return next((v for k, v in HBM_GIB.items() if k in generation.lower()), None)


def compile_need(config, devices, fv, batch_per_chip: int) -> int | None:
  """Bytes per chip of the compiled step, None where XLA refuses it for lack of memory."""
  import jax
  from asva_jax.training.memory import peak_bytes
  lowered, _ = lower(copy.deepcopy(config), devices, fsdp=fv.fsdp or len(devices), batch_per_chip=batch_per_chip,
                     frame_size=fv.frame_size, latents=fv.latents)
  try:
    return peak_bytes(lowered.compile())
  except jax.errors.JaxRuntimeError as e:
    if "RESOURCE_EXHAUSTED" not in str(e):
      raise
    return None


def search(config, devices, fv) -> list[dict]:
  from asva_jax.training.memory import REMAT_POLICIES
  hbm = hbm_gib(fv.topology)
  if hbm is None:
    raise AsvaError(f"--topology {fv.topology}: HBM per chip unknown (known: {', '.join(HBM_GIB)})")
  remats = [r for name in fv.remats for r in (REMAT_POLICIES if name == "best" else (name,))]
  rows = []
  for remat in dict.fromkeys(remats):
    c = copy.deepcopy(config)
    c.remat = remat
    t = time.perf_counter()
    best, needs = largest_fitting(lambda b: compile_need(c, devices, fv, b), int(hbm * 2**30), fv.max_batch)
    row = {"topology": fv.topology, "remat": remat, "largest_batch_per_chip": best, "hbm_gib": hbm,
           "need_gib": {b: (n / 2**30 if n is not None else None) for b, n in sorted(needs.items())},
           "compiles": len(needs), "seconds": time.perf_counter() - t}
    rows.append(row)
    print(f"{fv.topology} remat {remat}: largest batch per chip {best} of {hbm} GiB HBM; probed "
          + ", ".join(f"{b}: {'refused' if g is None else f'{g:.2f} GiB'}" for b, g in row["need_gib"].items())
          + f" ({row['seconds']:.0f} s)", flush=True)
  policies = [r for r in rows if r["remat"] in REMAT_POLICIES]
  if policies:
    top = max(policies, key=lambda r: r["largest_batch_per_chip"])
    print(f"{fv.topology}: best policy {top['remat']} ({top['largest_batch_per_chip']} clips per chip)")
  return rows


def main(argv, fv: flags.FlagValues = flags.FLAGS):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)
  devices = topology_devices(fv.topology)
  if fv.config.remat == "auto" and not (fv.remat or fv.search):  # the trainer chooses it on the device
    raise AsvaError("--config sets remat=auto, which the trainer resolves on the device; name the setting "
                    "to compile with --remat none, full or a policy (or --search --remats none,full,best)")
  import jax
  from asva_jax.training.flops import step_flops
  from asva_jax.training.memory import peak_bytes

  config = fv.config
  if fv.remat:
    config.remat = fv.remat
  if fv.frozen:
    config.precision.frozen = fv.frozen
  if fv.search:
    rows = search(config, devices, fv)
    if fv.json:
      from asva_jax.storage import write_json_atomic
      write_json_atomic(fv.json, {"topology": fv.topology, "frame_size": fv.frame_size, "latents": fv.latents,
                                  "frozen": config.precision.frozen, "rows": rows})
    return
  t = time.perf_counter()
  lowered, about = lower(config, devices, fsdp=fv.fsdp or len(devices),
                         batch_per_chip=fv.batch_per_chip, frame_size=fv.frame_size,
                         latents=fv.latents)
  print(f"{fv.topology}: {about}", flush=True)
  b = fv.batch_per_chip * len(devices) * int(config.train.grad_accum)
  flops = step_flops(lowered, int(config.train.grad_accum))
  try:
    compiled = lowered.compile()
  except jax.errors.JaxRuntimeError as e:
    if "RESOURCE_EXHAUSTED" not in str(e):
      raise
    print(f"compiled in {time.perf_counter() - t:.0f} s: does NOT fit; XLA says: "
          f"{str(e).splitlines()[0]}")
    return
  mem = compiled.memory_analysis()
  gib = lambda v: v / 2 ** 30
  total = peak_bytes(compiled)
  hbm = hbm_gib(fv.topology)
  print(f"compiled in {time.perf_counter() - t:.0f} s")
  print(f"per chip: arguments {gib(mem.argument_size_in_bytes):.2f} GiB, temporaries "
        f"{gib(mem.temp_size_in_bytes):.2f} GiB, outputs {gib(mem.output_size_in_bytes):.2f} GiB, "
        f"aliased {gib(mem.alias_size_in_bytes):.2f} GiB -> {gib(total):.2f} GiB"
        + (f" of {hbm} GiB HBM: {'fits' if gib(total) <= hbm else 'does NOT fit'}" if hbm else ""))
  if flops:
    print(f"FLOPs per step (whole program, lowered HLO): {flops / 1e12:.2f} TFLOP, "
          f"{flops / b / 1e12:.2f} TFLOP per clip")
  else:
    print("FLOPs: the TPU lowering gives no cost analysis; `python -m benchmarks.train_step --size full` "
          "counts them on the CPU-lowered HLO")


if __name__ == "__main__":
  runner.run(main, define_flags=define_flags)
