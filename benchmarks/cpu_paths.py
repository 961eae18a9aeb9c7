"""Before/after figures of the two CPU anomalies of issue 20 (docs/cpu_speed.md), in one command:

    python -m benchmarks.cpu_paths                      # both parts, about 5 minutes on 2 idle cores
    python -m benchmarks.cpu_paths --part sampling --configs tiny,medium --medium_steps 5
    python -m benchmarks.cpu_paths --part unet --latent 32 --runs 5
    python -m benchmarks.cpu_paths --part train --train_configs demo,tiny --runs 10
    python -m benchmarks.cpu_paths --part original --original PATH/TO/ASVA --runs 5

sampling (§2): per stage of `pipeline.sample` (VAE encode, ImageBind audio, denoise, VAE decode),
seconds per clip at batch 1 and 8, for denoising structures LOOP:AUDIO:CLIPS: the loop as one
`lax.scan` program ("scan") or one jitted call per UNet call ("calls"); the full masked audio
attention ("full") or each frame's own audio tokens gathered ("gathered"); the whole batch per UNet
call ("all") or N clips per call one after another. tiny runs 50 PNDM steps (51 UNet calls);
medium `--medium_steps` (per-call ratios do not depend on the count). unet (§3): the forward of a
53 M-parameter UNet (widths 64-256, 12 frames of `--latent`² latents, batch 1, float32) with the
structure before (auto attention, full audio) and after (the per-backend choices). conv (§3's
minimal reproduction): one 3 x 3 convolution at each level's shape of that UNet, XLA:CPU
(`lax.conv_general_dilated`, NHWC, jitted) against PyTorch's `conv2d` (NCHW, oneDNN) on the same
numbers; needs torch. train: the trainer's optimizer step (`training.program`, state carried from
step to step) with the audio cross-attention masked over all 229 ImageBind tokens against each
frame's 25 gathered (`model.audio_keys`), at configs/demo.py (its batch, 16 x 16 frames) and
`benchmarks.train_step` sizes (tiny: 32 x 32 frames; medium: 128 x 128; `--train_batch` clips).
original (§3 side by side): the unet part's UNet in the original PyTorch code (imported from a local
checkout, `--original`) and ours on the same weights, converted by `convert.unet`; needs torch and
diffusers.

Every variant is compiled first; then the variants run interleaved, `--runs` rounds, so that load
on a shared machine hits all alike. Printed: median wall seconds, median process CPU seconds (less
sensitive to preemption) and ratios to the first variant. Random weights; no assertions.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from asva_jax.commands import runner


def define_flags(fv: flags.FlagValues = flags.FLAGS) -> None:
  flags.DEFINE_list("part", ["sampling", "unet", "conv"],
                    "sampling (issue 20 §2), unet (§3), conv (§3: one convolution, XLA vs PyTorch) and/or "
                    "train (the train step, masked vs gathered audio keys), original (§3: the original "
                    "PyTorch UNet beside ours, --original)", flag_values=fv)
  flags.DEFINE_list("train_configs", ["demo", "tiny"], "train: configs/demo.py (demo:N at N x N frames, N a "
                    "multiple of 4) and/or benchmarks.train_step sizes (tiny, tiny:one_level, medium)",
                    flag_values=fv)
  flags.DEFINE_integer("train_batch", 2, "train: clips per step of the train_step sizes (demo: its own)",
                       flag_values=fv)
  flags.DEFINE_list("configs", ["tiny", "medium"], "sampling configs (benchmarks.sampling.CONFIGS)",
                    flag_values=fv)
  flags.DEFINE_list("batch", ["1", "8"], "sampling batch sizes", flag_values=fv)
  flags.DEFINE_list("denoise", ["scan:full:all", "calls:full:all", "scan:gathered:1"],
                    "denoise structures LOOP:AUDIO:CLIPS to compare, the first the reference: LOOP scan or "
                    "calls, AUDIO full or gathered (audio_keys), CLIPS clips per UNet call (all: the batch)",
                    flag_values=fv)
  flags.DEFINE_list("medium_denoise", ["scan:full:all", "scan:gathered:1"],
                    "--denoise for the medium config (fewer compiles: keeps the command near 5 minutes)",
                    flag_values=fv)
  flags.DEFINE_integer("tiny_steps", 50, "PNDM steps of the tiny config", flag_values=fv)
  flags.DEFINE_integer("medium_steps", 3, "PNDM steps of the medium config", flag_values=fv)
  flags.DEFINE_integer("latent", 32, "unet: latent height = width", flag_values=fv)
  flags.DEFINE_integer("runs", 3, "interleaved timed rounds (after one warm-up call each)", flag_values=fv)
  flags.DEFINE_string("original", None, "original: a local checkout of the original code (lzhangbj/ASVA, the "
                      "folder holding avgen/), imported to run its UNet; nothing of it is copied", flag_values=fv)


# The §3 UNet: four levels of every block type at widths 64-256, 64-wide heads, 53.0 M parameters.
UNET_WIDTHS = dict(block_out_channels=[64, 128, 256, 256], attention_head_dim=[1, 2, 4, 4])


def interleaved(fns: dict[str, Callable[[], object]], runs: int) -> dict[str, tuple[float, float]]:
  """{name: (median wall s, median process CPU s)} over `runs` rounds that call every fn in turn."""
  for fn in fns.values():
    jax.block_until_ready(fn())
  wall = {k: [] for k in fns}
  cpu = {k: [] for k in fns}
  for _ in range(runs):
    for k, fn in fns.items():
      w, c = time.perf_counter(), time.process_time()
      jax.block_until_ready(fn())
      wall[k].append(time.perf_counter() - w)
      cpu[k].append(time.process_time() - c)
  return {k: (statistics.median(wall[k]), statistics.median(cpu[k])) for k in fns}


def timed(fns: dict[str, Callable[[], object]], runs: int, title: str):
  """(`interleaved`'s medians, the first variant's): prints the title with the time it took."""
  start = time.perf_counter()
  t = interleaved(fns, runs)
  print(f"\n{title} ({time.perf_counter() - start:.0f} s), median of {runs} [{device()}]")
  return t, next(iter(t.values()))


def sampling_stages(name: str, batch: int, steps: int, structures) -> dict[str, Callable]:
  """The stages of `pipeline.sample` as separate calls on the same inputs."""
  from asva_jax.constants import NULL_PROMPT
  from asva_jax.pipeline import denoise, pipeline
  from benchmarks.sampling import build, clips
  models = build(name, jnp.float32)
  cs = clips(name, batch)
  seeds = list(range(batch))
  images = np.stack([c.image for c in cs])
  audio = np.stack([c.audio for c in cs])
  z0 = pipeline.image_latents(models, images, seeds)
  tokens, null_tokens, masks = pipeline.audio_tokens(models, audio)
  x = jnp.concatenate([z0[:, None], pipeline.initial_noise(seeds, (pipeline.num_frames(models) - 1,)
                                                            + z0.shape[1:])], axis=1)
  cond = dict(text=np.stack([models.text_encodings[c.prompt] for c in cs]), audio=tokens, audio_mask=masks,
              null_text=models.text_encodings[NULL_PROMPT][None], null_audio=null_tokens,
              null_audio_mask=masks, audio_guidance=4.0, num_inference_steps=steps)
  keys = {"full": None, "gathered": int(np.asarray(masks).sum(-1).max())}
  fns = {"encode": lambda: pipeline.image_latents(models, images, seeds),
         "audio": lambda: pipeline.audio_tokens(models, audio)}
  for structure in structures:
    loop, a, clips_per_call = structure.split(":")
    clips_per_call = None if clips_per_call == "all" else int(clips_per_call)
    fns[f"denoise {structure}"] = (lambda loop=loop, k=keys[a], c=clips_per_call: denoise(
        models.unet, x, loop=loop, audio_keys=k, clips_per_call=c, **cond))
  fns["decode"] = lambda: pipeline.decode(models, x)
  return fns


def sampling_part(fv) -> None:
  steps = {"tiny": fv.tiny_steps, "medium": fv.medium_steps}
  for name in fv.configs:
    batches = [int(b) for b in fv.batch]
    structures = fv.medium_denoise if name == "medium" else fv.denoise
    fns = {}
    for b in batches:
      fns.update({f"b{b} {k}": f for k, f in sampling_stages(name, b, steps.get(name, 50),
                                                              structures).items()})
    start = time.perf_counter()
    t = interleaved(fns, fv.runs)
    print(f"\n§2 sampling, {name}, {steps.get(name, 50)} PNDM steps with audio guidance "
          f"({time.perf_counter() - start:.0f} s): seconds per clip, median of {fv.runs} [{device()}]")
    print(f"  {'stage':34s} {'wall s/clip':>12s} {'cpu s/clip':>11s}")
    for k, (w, c) in t.items():
      b = int(k.split()[0][1:])
      print(f"  {k:34s} {w / b:12.4f} {c / b:11.4f}")
    for b in batches:
      ref = f"b{b} denoise {structures[0]}"
      for k in t:
        if k.startswith(f"b{b} denoise") and k != ref:
          print(f"  batch {b}: {k[len(f'b{b} '):]} / {ref[len(f'b{b} '):]}: wall {t[k][0] / t[ref][0]:.2f}, "
                f"cpu {t[k][1] / t[ref][1]:.2f}")
    if len(batches) > 1:
      lo, hi = min(batches), max(batches)
      for k in t:
        if k.startswith(f"b{hi} denoise"):
          base = f"b{lo}" + k[len(f"b{hi}"):]
          print(f"  {k[len(f'b{hi} '):]}: batch {hi} / batch {lo} per clip: wall "
                f"{t[k][0] / hi / (t[base][0] / lo):.2f}, cpu {t[k][1] / hi / (t[base][1] / lo):.2f}")


def unet_part(fv) -> None:
  from flax import nnx
  from asva_jax.audio import segment_masks
  from asva_jax.models.unet_3d import audio_keys_per_frame, build_unet
  from benchmarks.unet_forward import SMALL_CONFIG, make_inputs
  config = dict(SMALL_CONFIG, **UNET_WIDTHS)
  weights = nnx.split(build_unet(config, seed=0))[1]
  inputs = make_inputs(1, 12, fv.latent, jnp.float32, False, 1)
  chosen = audio_keys_per_frame(segment_masks(12))
  variants = {"before (auto attention, full audio)": ("auto", None),
              f"after (auto attention, audio_keys={chosen})": ("auto", chosen)}
  fns, outs = {}, {}
  for label, (attention, keys) in variants.items():
    graph = nnx.split(build_unet(config, abstract=True, attention=attention))[0]
    fn = jax.jit(lambda state, *a, graph=graph, keys=keys: nnx.merge(graph, state)(*a, audio_keys=keys))
    fns[label] = lambda fn=fn: fn(weights, *inputs)
    outs[label] = np.asarray(fns[label]())
  first = next(iter(outs.values()))
  t, base = timed(fns, fv.runs, f"§3 UNet forward, 53 M parameters, 12 frames of {fv.latent}x{fv.latent}, "
                                f"batch 1, float32")
  for label, (w, c) in t.items():
    err = np.abs(outs[label] - first).max() / np.abs(first).max()
    print(f"  {label:44s} wall {w:7.3f} s ({w / base[0]:.2f}x)  cpu {c:7.3f} s ({c / base[1]:.2f}x)  "
          f"max |diff| / max |before| {err:.1e}")


# (channels, side) of the §3 UNet's four levels at 32 x 32 latents; 12 frames are the batch of a 2-D conv.
CONV_SHAPES = ((64, 32), (128, 16), (256, 8), (256, 4))


def conv_part(fv) -> None:
  import torch
  import torch.nn.functional as F
  rng = np.random.default_rng(0)
  fns, pairs = {}, []
  for channels, side in CONV_SHAPES:
    x = rng.standard_normal((12, side, side, channels), dtype=np.float32)
    w = rng.standard_normal((3, 3, channels, channels), dtype=np.float32) / (3 * channels ** 0.5)
    conv = jax.jit(lambda x, w: jax.lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                                              dimension_numbers=("NHWC", "HWIO", "NHWC")))
    xj, wj = jnp.asarray(x), jnp.asarray(w)
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    wt = torch.from_numpy(w.transpose(3, 2, 0, 1).copy())
    diff = np.abs(np.asarray(conv(xj, wj)) - F.conv2d(xt, wt, padding=1).numpy().transpose(0, 2, 3, 1)).max()
    key = f"{channels} ch, {side}x{side}"
    fns[f"xla   {key}"] = lambda conv=conv, xj=xj, wj=wj: conv(xj, wj)
    fns[f"torch {key}"] = lambda xt=xt, wt=wt: (F.conv2d(xt, wt, padding=1), None)[1]
    pairs.append((key, diff))
  t = interleaved(fns, max(fv.runs, 10))
  print(f"\n§3 one 3x3 convolution, 12 frames, float32, XLA:CPU vs PyTorch {torch.__version__} "
        f"({torch.get_num_threads()} threads), median of {max(fv.runs, 10)} [{device()}]")
  for key, diff in pairs:
    (xw, xc), (tw, tc) = t[f"xla   {key}"], t[f"torch {key}"]
    print(f"  {key:16s} xla wall {xw * 1e3:8.2f} ms  torch wall {tw * 1e3:8.2f} ms  torch/xla wall {tw / xw:.2f}  "
          f"cpu {tc / xc:.2f}  max |diff| {diff:.1e}")


TRAIN_CONFIGS = ("demo", "tiny", "tiny:one_level", "medium")  # and demo:N


def train_config(name: str, batch: int):
  """(config, frame size) of a train part config: configs/demo.py as the demo trains it (demo:N at
  N x N frames), or a benchmarks.train_step size at `batch` clips per step."""
  from benchmarks.train_step import REPO, sized_config
  if not name.startswith("demo"):
    config, frame_size = sized_config(name)
    config.train.batch_size = batch
    return config, frame_size
  import importlib.util
  spec = importlib.util.spec_from_file_location("demo_config", REPO / "configs" / "demo.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  if name != "demo":  # demo:N, the demo at N x N frames
    side = int(name.partition(":")[2])
    config.data.synthetic.size = config.data.synthetic.source_size = (side, side)
  return config, tuple(config.data.synthetic.size)


def train_steps(name: str, batch: int) -> tuple[dict[str, Callable], dict[str, float], int]:
  """({form: one optimizer step}, {form: its first step's loss}, clips per step): the trainer's step
  built per model.audio_keys form on the same random model and batch; each call advances its state."""
  from asva_jax.parallel import sharding
  from asva_jax.training.build import build_models
  from asva_jax.training.program import batch_shapes, build_program
  config, frame_size = train_config(name, batch)
  clips = int(config.train.batch_size)
  fns, losses = {}, {}
  for form in ("masked", "gathered"):
    config.model.audio_keys = form
    model = build_models(config).model  # per form: the step donates (deletes) the state it was given
    rng = np.random.default_rng(0)
    local = {k: (rng.integers(0, 256, v.shape, dtype=np.uint8) if v.dtype == np.uint8
                 else rng.standard_normal(v.shape).astype(v.dtype))
             for k, v in batch_shapes(model, clips, frame_size, latents=False).items()}
    program, state, frozen = build_program(model, config, sharding.make_mesh(config.mesh))
    del model
    gb = sharding.global_batch(local, program.mesh)
    compiled = program.step.lower(state, frozen, gb).compile()
    held = {"state": state}

    def step(compiled=compiled, held=held, frozen=frozen, gb=gb):
      held["state"], metrics = compiled(held["state"], frozen, gb)
      return metrics
    losses[form] = float(step()["loss"])
    fns[f"{form} ({program.audio_keys or 229} keys)"] = step
  return fns, losses, clips


def train_part(fv) -> None:
  for name in fv.train_configs:
    fns, losses, clips = train_steps(name, fv.train_batch)
    t, base = timed(fns, fv.runs, f"train step, {name}, {clips} clips per step, audio cross-attention "
                                  f"masked vs gathered")
    for label, (w, c) in t.items():
      print(f"  {label:22s} wall {w:8.4f} s ({w / base[0]:.2f}x)  cpu {c:8.4f} s ({c / base[1]:.2f}x)  "
            f"steps/s {1 / w:6.2f}")
    print(f"  first-step loss: masked {losses['masked']:.7g}, gathered {losses['gathered']:.7g} "
          f"(relative difference {abs(losses['gathered'] - losses['masked']) / abs(losses['masked']):.1e})")


def original_part(fv) -> None:
  """§3 side by side: the original PyTorch UNet, imported from `--original`, against ours on the same
  random weights (written by the original's `save_pretrained`, read as `convert.unet` reads it) and inputs."""
  import sys
  import tempfile
  import torch
  from flax import nnx
  from asva_jax.audio import segment_masks
  from asva_jax.models.unet_3d import audio_keys_per_frame, build_unet
  from asva_jax.models.unet_config import UNet3DConfig
  from asva_jax.torch_weights import find_weights_file, load_into, open_state_dict, read_json_config
  from benchmarks.unet_forward import AUDIO_TOKENS, CONTEXT_DIM, SMALL_CONFIG, TEXT_TOKENS
  sys.path.insert(0, fv.original)  # checked by check_flags: a folder holding avgen/
  from avgen.models.unets import AudioUNet3DConditionModel
  torch.manual_seed(0)
  original = AudioUNet3DConditionModel(**dict(SMALL_CONFIG, **UNET_WIDTHS)).eval()
  with torch.no_grad():  # zero-initialised paths (temporal, audio) get values too, so every path runs
    for p in original.parameters():
      p.add_(0.02 * torch.randn_like(p))
  with tempfile.TemporaryDirectory() as folder:
    original.save_pretrained(folder, safe_serialization=True)
    # What `convert.unet.import_unet` does (benchmarks may not import the converter: .importlinter).
    ours = build_unet(UNet3DConfig.from_dict(read_json_config(folder), source=folder), abstract=True)
    weights_file = find_weights_file(folder)
    load_into(ours, open_state_dict(weights_file), str(weights_file))
  graph, weights = nnx.split(ours)
  frames, side = 12, fv.latent
  rng = np.random.default_rng(0)
  sample = rng.standard_normal((1, 4, frames, side, side), np.float32)
  timestep = np.array([500])
  # Per-frame contexts, as the original pipeline feeds them (each video's tokens repeated over frames).
  text = np.repeat(rng.standard_normal((1, 1, TEXT_TOKENS, CONTEXT_DIM), np.float32), frames, axis=1)
  audio = np.repeat(rng.standard_normal((1, 1, AUDIO_TOKENS, CONTEXT_DIM), np.float32), frames, axis=1)
  mask = np.asarray(segment_masks(frames))[None]
  keys = audio_keys_per_frame(mask[0])
  fn = jax.jit(lambda state, *a: nnx.merge(graph, state)(*a, audio_keys=keys))
  masked = jax.jit(lambda state, *a: nnx.merge(graph, state)(*a))
  args = (jnp.asarray(sample.transpose(0, 2, 3, 4, 1)), jnp.asarray(timestep, jnp.int32), jnp.asarray(text),
          jnp.asarray(audio), jnp.asarray(mask))
  t_in = [torch.from_numpy(x) for x in (sample, timestep, text, audio, mask)]

  def run_original():
    with torch.inference_mode():
      return original(t_in[0], t_in[1], encoder_hidden_states=t_in[2], audio_encoder_hidden_states=t_in[3],
                      audio_attention_mask=t_in[4]).sample

  expected = run_original().numpy()
  got = np.asarray(fn(weights, *args)).transpose(0, 4, 1, 2, 3)
  err = np.abs(got - expected).max() / np.abs(expected).max()
  fns = {f"original PyTorch {torch.__version__} ({torch.get_num_threads()} threads)": run_original,
         f"ours (jit, audio_keys={keys})": lambda: fn(weights, *args),
         "ours (jit, masked audio attention)": lambda: masked(weights, *args)}
  t, base = timed(fns, fv.runs, f"§3 side by side: the original UNet and ours, {original.num_parameters() / 1e6:.1f} M "
                                f"parameters, {frames} frames of {side}x{side}, batch 1, float32")
  for label, (w, c) in t.items():
    print(f"  {label:44s} wall {w:7.3f} s ({w / base[0]:.2f}x)  cpu {c:7.3f} s ({c / base[1]:.2f}x)")
  print(f"  outputs: max |ours - original| / max |original| = {err:.1e}")


def device() -> str:
  return f"{jax.default_backend()}: {jax.devices()[0].device_kind}, jax {jax.__version__}"


def demo_size(name: str) -> bool:
  """Whether `name` is demo:N with N a positive multiple of 4 (the demo's space-to-depth factor)."""
  head, _, side = name.partition(":")
  return head == "demo" and side.isdigit() and int(side) > 0 and int(side) % 4 == 0


def check_flags(fv) -> None:
  """One clear line for a bad flag, before anything is built."""
  from absl import app
  for flag, allowed in (("part", ("sampling", "unet", "conv", "train", "original")), ("configs", ("tiny", "medium", "full")),
                        ("train_configs", TRAIN_CONFIGS)):
    bad = [v for v in fv[flag].value if v not in allowed and not (flag == "train_configs" and demo_size(v))]
    if bad:
      more = " or demo:N (N a multiple of 4)" if flag == "train_configs" else ""
      raise app.UsageError(f"--{flag}: {bad} not in {allowed}{more}")
  for flag in ("denoise", "medium_denoise"):
    for structure in fv[flag].value:
      parts = structure.split(":")
      if (len(parts) != 3 or parts[0] not in ("scan", "calls") or parts[1] not in ("full", "gathered")
          or not (parts[2] == "all" or parts[2].isdigit() and int(parts[2]) > 0)):
        raise app.UsageError(f"--{flag} {structure!r}: expected LOOP:AUDIO:CLIPS, LOOP scan or calls, "
                             f"AUDIO full or gathered, CLIPS all or a positive integer")
  if not all(b.isdigit() and int(b) > 0 for b in fv.batch):
    raise app.UsageError(f"--batch {','.join(fv.batch)}: expected positive integers")
  if fv.train_batch < 1:
    raise app.UsageError(f"--train_batch {fv.train_batch}: expected a positive integer")
  if "original" in fv.part and not (fv.original and (Path(fv.original) / "avgen" / "models").is_dir()):
    raise app.UsageError(f"--original {fv.original}: --part original needs a local checkout of the original "
                         "code (lzhangbj/ASVA): the folder that holds avgen/models/")
  if fv.runs < 1 or fv.latent < 8 or fv.latent % 8:
    raise app.UsageError("--runs must be >= 1 and --latent a multiple of 8")


def main(argv, fv: flags.FlagValues = flags.FLAGS):
  del argv
  check_flags(fv)
  start = time.perf_counter()
  if "sampling" in fv.part:
    sampling_part(fv)
  if "unet" in fv.part:
    unet_part(fv)
  if "conv" in fv.part:
    conv_part(fv)
  if "train" in fv.part:
    train_part(fv)
  if "original" in fv.part:
    original_part(fv)
  print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
  runner.run(main, define_flags=define_flags)
