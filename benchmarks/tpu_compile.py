r"""Compile the real train step for a TPU topology on this (CPU) machine: per-chip memory and FLOPs.

    pip install 'asva-jax[tpu]'     # libtpu, the version jax pins (not needed for anything else)
    python -m benchmarks.tpu_compile --config configs/avsyncd.py --topology v5e:2x4 \
        --batch_per_chip 4 [--remat full] [--fsdp 8] [--frozen bfloat16]

JAX compiles ahead of time for a TPU topology without a TPU
(`jax.experimental.topologies`): the model is abstract (shapes only, no weights),
every input is a ShapeDtypeStruct carrying its sharding on the topology's mesh,
and `jit(step).lower(...).compile()` gives XLA's memory analysis per chip
(arguments, temporaries, outputs) and the FLOPs. The step is the one
`python -m asva_jax.train` runs: gradient over the trainable set, clipping, AdamW,
VAE encoding of the frames and the audio encoder inside. Prints figures, asserts nothing.
"""

from __future__ import annotations

import os
import time

from absl import app, flags, logging

from asva_jax import command

_CONFIG = command.define_config_file("config", "configs/avsyncd.py", "Training config.")
flags.DEFINE_string("topology", "v5e:2x4", "TPU topology, e.g. v5e:2x4, v5p:2x2x1, v6e:2x4")
flags.DEFINE_integer("batch_per_chip", 4, "clips per chip per micro-batch")
flags.DEFINE_string("remat", None, "override config.remat")
flags.DEFINE_integer("fsdp", None, "override config.mesh.fsdp (default: all chips)")
flags.DEFINE_string("frozen", None, "override config.precision.frozen")
flags.DEFINE_integer("frame_size", 256, "frame height = width")
FLAGS = flags.FLAGS

HBM_GIB = {"v5e": 15.75, "v5 lite": 15.75, "v5p": 95.74, "v6e": 31.25, "v6 lite": 31.25, "v4": 32.0}


def abstract_trainee(config):
  import jax.numpy as jnp
  from flax import nnx
  from asva_jax.models.imagebind_audio import build_audio_encoder
  from asva_jax.models.unet_3d import build_unet
  from asva_jax.models.unet_config import DEFAULT_CONFIG
  from asva_jax.models.vae import AutoencoderKL, VAEConfig
  from asva_jax.training.models import Trainee, remat_option
  compute = jnp.dtype(config.precision.compute)
  unet = build_unet(dict(DEFAULT_CONFIG), abstract=True, dtype=compute, remat=remat_option(config.remat),
                    attention=config.model.attention)
  vae = nnx.eval_shape(lambda: AutoencoderKL(VAEConfig(), dtype=compute, rngs=nnx.Rngs(0)))
  audio = build_audio_encoder(None, abstract=True, dtype=compute, attention=config.model.attention)
  return Trainee(unet, vae, audio)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)
  generation = FLAGS.topology.split(":")[0]
  os.environ.setdefault("TPU_ACCELERATOR_TYPE", f"{generation}-8")
  os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
  import jax
  import jax.numpy as jnp
  import numpy as np
  from jax.experimental import topologies
  from jax.sharding import Mesh
  from asva_jax.schedulers.noise_schedule import scaled_linear_alphas_cumprod
  from asva_jax.training import sharding
  from asva_jax.training.defaults import NUM_FRAMES
  from asva_jax.training.flops import step_flops
  from asva_jax.training.state import count_params, make_optimizer, split_model
  from asva_jax.training.step import make_train_step

  config = _CONFIG.value
  if FLAGS.remat:
    config.remat = FLAGS.remat
  if FLAGS.frozen:
    config.precision.frozen = FLAGS.frozen
  topology = topologies.get_topology_desc(topology_name=FLAGS.topology, platform="tpu")
  devices = topology.devices
  n = len(devices)
  fsdp = FLAGS.fsdp or n
  mesh = Mesh(np.asarray(devices, dtype=object).reshape(n // fsdp, fsdp), sharding.BATCH_AXES)
  model = abstract_trainee(config)
  graphdef, params, frozen = split_model(model, config)
  optimizer = make_optimizer(config.train)
  min_size = int(config.mesh.min_shard_size)
  p_sh = sharding.tree_shardings(params, mesh, shard=True, min_size=min_size)
  f_sh = sharding.tree_shardings(frozen, mesh, shard=bool(config.mesh.shard_frozen), min_size=min_size)
  opt = jax.eval_shape(optimizer.init, params)
  o_sh = sharding.tree_shardings(opt, mesh, shard=True, min_size=min_size)
  rep = sharding.replicated(mesh)
  spec = lambda tree, sh: jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                                       tree, sh)
  state = {"step": jax.ShapeDtypeStruct((), jnp.int32, sharding=rep), "params": spec(params, p_sh),
           "opt_state": spec(opt, o_sh)}
  b, s = FLAGS.batch_per_chip * n * int(config.train.grad_accum), FLAGS.frame_size
  batch = {"video": jax.ShapeDtypeStruct((b, NUM_FRAMES, s, s, 3), jnp.uint8,
                                         sharding=sharding.batch_sharding(mesh, 5)),
           "mel": jax.ShapeDtypeStruct((b, 128, 204), jnp.float32, sharding=sharding.batch_sharding(mesh, 3)),
           "text": jax.ShapeDtypeStruct((b, 77, 768), jnp.float32, sharding=sharding.batch_sharding(mesh, 3))}
  masks = jnp.asarray(model.audio_encoder.segment_masks())
  step = make_train_step(graphdef, optimizer, config, jnp.asarray(scaled_linear_alphas_cumprod()), masks)
  jitted = jax.jit(step, in_shardings=({"step": rep, "params": p_sh, "opt_state": o_sh}, f_sh, None),
                   out_shardings=({"step": rep, "params": p_sh, "opt_state": o_sh}, rep), donate_argnums=(0,))
  print(f"{FLAGS.topology}: {n} chips ({devices[0].device_kind}), mesh data={n // fsdp} fsdp={fsdp}; "
        f"{FLAGS.batch_per_chip} clips/chip, global batch {b}; remat {config.remat}; frozen "
        f"{config.precision.frozen}; {count_params(params):,} trainable, {count_params(frozen):,} frozen",
        flush=True)
  t = time.perf_counter()
  lowered = jitted.lower(state, frozen_spec := spec(frozen, f_sh), batch)
  del frozen_spec
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
  command.run(main)
