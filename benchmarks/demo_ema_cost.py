r"""What EMA weights cost the demo's training step: the step of configs/demo.py with and without
`train.ema_decay`, timed interleaved in one process (A/B, so machine load hits both alike).

    python -m benchmarks.demo_ema_cost [--rounds 8] [--steps 10]

Prints the median seconds per step of each and their ratio; the demo's idle training time with
EMA is about its idle time without (docs/demo.md) times that ratio. Asserts nothing.
"""

from __future__ import annotations

import statistics
import sys
import time

import jax
import numpy as np
from absl import app, flags


flags.DEFINE_integer("rounds", 8, "A/B rounds")
flags.DEFINE_integer("steps", 10, "steps per round and variant")


def build(ema_decay: float):
  from asva_jax.parallel import sharding
  from asva_jax.training.build import build_models
  from asva_jax.training.program import batch_shapes, build_program
  import importlib.util
  from asva_jax.commands.demo import DEFAULT_CONFIG
  spec = importlib.util.spec_from_file_location("demo_config", DEFAULT_CONFIG)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  config.train.ema_decay = ema_decay
  built = build_models(config)
  program, state, frozen = build_program(built.model, config, sharding.make_mesh(config.mesh))
  rng = np.random.default_rng(0)
  shapes = batch_shapes(built.model, int(config.train.batch_size), tuple(config.data.synthetic.size), latents=False)
  batch = {k: (rng.integers(0, 256, v.shape).astype(v.dtype) if v.dtype == np.uint8
               else rng.normal(size=v.shape).astype(v.dtype)) for k, v in shapes.items()}
  batch = sharding.global_batch(batch, program.mesh)
  step = program.step.lower(state, frozen, batch).compile()
  return step, state, frozen, batch


def main(argv) -> None:
  del argv
  fv = flags.FLAGS
  variants = {"no EMA": build(0.0), "EMA": build(0.999)}
  states = {name: v[1] for name, v in variants.items()}
  times = {name: [] for name in variants}
  for _ in range(fv.rounds):
    for name, (step, _, frozen, batch) in variants.items():
      state = states[name]
      t0 = time.perf_counter()
      for _ in range(fv.steps):
        state, metrics = step(state, frozen, batch)
      jax.block_until_ready(metrics)
      times[name].append((time.perf_counter() - t0) / fv.steps)
      states[name] = state
  medians = {name: statistics.median(t) for name, t in times.items()}
  for name, m in medians.items():
    print(f"{name}: {m * 1e3:.1f} ms per step (median of {fv.rounds} rounds of {fv.steps})")
  print(f"ratio EMA / no EMA: {medians['EMA'] / medians['no EMA']:.3f}")
  sys.stdout.flush()


if __name__ == "__main__":
  app.run(main)
