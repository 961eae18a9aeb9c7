r"""Compile the real train step for a TPU topology on this (CPU) machine: per-chip memory and FLOPs.

    pip install 'asva-jax[tpu]'     # libtpu, the version jax pins (not needed for anything else)
    python -m benchmarks.tpu_compile --config configs/avsyncd.py --topology v5e:2x4 \
        --batch_per_chip 4 [--remat full] [--fsdp 8] [--frozen bfloat16] [--latents]

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


def main(argv, fv: flags.FlagValues = flags.FLAGS):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)
  generation = fv.topology.split(":")[0]
  os.environ.setdefault("TPU_ACCELERATOR_TYPE", f"{generation}-8")
  os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
  import jax
  from jax.experimental import topologies
  from asva_jax.training.flops import step_flops

  config = fv.config
  if fv.remat:
    config.remat = fv.remat
  if fv.frozen:
    config.precision.frozen = fv.frozen
  try:
    topology = topologies.get_topology_desc(topology_name=fv.topology, platform="tpu")
  except (RuntimeError, ValueError) as e:  # no libtpu, or a topology it does not know
    raise AsvaError(f"--topology {fv.topology}: {str(e).splitlines()[0]} (the TPU compiler comes "
                    f"with pip install -e '.[tpu]')") from None
  devices = topology.devices
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
  total = (mem.argument_size_in_bytes + mem.temp_size_in_bytes + mem.output_size_in_bytes
           - mem.alias_size_in_bytes)
  hbm = next((v for k, v in HBM_GIB.items() if k in generation.lower()), None)
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
