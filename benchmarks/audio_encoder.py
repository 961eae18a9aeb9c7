"""Throughput of the audio path: log-mel frontend (numpy, JAX) and the ImageBind audio encoder.

    python -m benchmarks.audio_encoder [--batch 8] [--repeats 3] [--sizes tiny,huge] [--dtype float32]

Prints clips per second on the default JAX backend (CPU, or GPU when present); random
weights, 2-s clips at 16 kHz. No assertions.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from flax import nnx
from tqdm import tqdm

from asva_jax.commands import runner
from asva_jax.audio.fbank import waveform_to_mel, waveform_to_mel_jax
from asva_jax.models.imagebind_audio import ImageBindAudioConfig, build_audio_encoder

def define_flags(fv: flags.FlagValues = flags.FLAGS) -> None:
  flags.DEFINE_integer("batch", 8, "clips per encoder / JAX-frontend call", flag_values=fv)
  flags.DEFINE_integer("repeats", 3, "timed calls per measurement (after one warm-up call)", flag_values=fv)
  flags.DEFINE_list("sizes", ["tiny", "huge"], "encoder sizes: tiny (64 wide, 2 blocks) and/or huge",
                    flag_values=fv)
  flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "encoder compute dtype", flag_values=fv)


SIZES = {
    "tiny": ImageBindAudioConfig(embed_dim=64, num_blocks=2, num_heads=4, out_embed_dim=48),
    "huge": ImageBindAudioConfig(),
}


def clips_per_second(fn, clips: int, repeats: int) -> float:
  jax.block_until_ready(fn())  # compile / warm up
  start = time.perf_counter()
  for _ in range(repeats):
    jax.block_until_ready(fn())
  return clips * repeats / (time.perf_counter() - start)


def main(argv, fv: flags.FlagValues = flags.FLAGS):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  unknown = [s for s in fv.sizes if s not in SIZES]
  if unknown or not fv.sizes:
    raise app.UsageError(f"--sizes {','.join(fv.sizes)}: expected one or more of {', '.join(SIZES)}")
  for flag in ("batch", "repeats"):
    if fv[flag].value < 1:
      raise app.UsageError(f"--{flag} {fv[flag].value}: must be at least 1")
  batch, repeats = fv.batch, fv.repeats
  rng = np.random.default_rng(0)
  waves = (0.1 * rng.standard_normal((batch, 32000))).astype(np.float32)
  print(f"backend: {jax.default_backend()} ({jax.devices()[0].device_kind}), batch {batch}, "
        f"{repeats} timed calls, encoder dtype {fv.dtype}")
  results = {}
  tasks = ["frontend numpy", "frontend jax"] + [f"encoder {s}" for s in fv.sizes]
  for task in tqdm(tasks, desc="benchmarks"):
    if task == "frontend numpy":
      results[task] = clips_per_second(lambda: [waveform_to_mel(w) for w in waves], batch, repeats)
    elif task == "frontend jax":
      frontend = jax.jit(waveform_to_mel_jax)
      device_waves = jnp.asarray(waves)
      results[task] = clips_per_second(lambda: frontend(device_waves), batch, repeats)
    else:
      size = task.split()[-1]
      model = build_audio_encoder(SIZES[size], dtype=jnp.dtype(fv.dtype))
      graph, state = nnx.split(model)
      encode = jax.jit(lambda s, m: nnx.merge(graph, s)(m))
      mel = jnp.asarray(rng.standard_normal((batch, 128, 204)), jnp.float32)
      results[task] = clips_per_second(lambda: encode(state, mel), batch, repeats)
  for task, value in results.items():
    print(f"{task:>16}: {value:10.1f} clips/s")


if __name__ == "__main__":
  runner.run(main, define_flags=define_flags)
