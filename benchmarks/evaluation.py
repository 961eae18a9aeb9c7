"""Throughput of the evaluation networks at full size, and the time of the AVSync15 test protocol.

    python -m benchmarks.evaluation [--batch 2] [--repeats 1] [--networks inception,i3d,avsync,...]

Random (zero) weights at the real sizes: FID Inception (229 px), I3D (12 x 224 px),
the AVSync classifier (12 x 224 px clip + log-mel), ImageBind-Huge's vision tower
(per 224-px image), audio tower (per log-mel) and text tower (per prompt). Each is timed
at batch 1 and at --batch, after one warm-up call (compilation excluded), through the
same jitted functions as `python -m asva_jax.eval` (`asva_jax.eval.detectors`).

The whole metric set is composed from these timings, per generated clip as the protocol
needs it: reference clip (Inception on 12 frames, I3D, classifier, ImageBind on frame 0 and
the audio) plus generated clip (Inception on 12 frames, I3D, classifier, ImageBind on 12
frames and the audio); text once per class. The protocol: 150 videos x 3 clips.
On a CPU the ImageBind vision tower alone takes seconds per image, so per-frame networks
are timed on --batch images (not clips) and scaled to 12 frames: an extrapolation.
Prints a table; asserts nothing.
"""

from __future__ import annotations

import gc
import time

import jax
import jax.numpy as jnp
from absl import app, flags
from flax import nnx

from asva_jax.commands import runner
from asva_jax.eval import detectors as D

def define_flags(fv: flags.FlagValues = flags.FLAGS) -> None:
  flags.DEFINE_integer("batch", 2, "items per call for the batched measurement", flag_values=fv)
  flags.DEFINE_integer("repeats", 1, "timed calls per measurement (after one warm-up call)", flag_values=fv)
  flags.DEFINE_list("networks", list(NETWORKS), "networks to time", flag_values=fv)
  flags.DEFINE_integer("videos", AVSYNC15_TEST_VIDEOS, "protocol: test videos (AVSync15: 150)", flag_values=fv)
  flags.DEFINE_integer("clips", CLIPS_PER_VIDEO, "protocol: clips per video", flag_values=fv)
  flags.DEFINE_integer("classes", AVSYNC15_CLASSES, "protocol: IT prompts (AVSync15: 15 classes)",
                       flag_values=fv)
  flags.DEFINE_integer("vision_blocks", 4, "blocks of the ImageBind vision tower actually built (its 32 "
                       "full-width blocks would need ~9 GB here); the time is scaled to 32 blocks",
                       flag_values=fv)


FRAMES = 12
TINY_TOWER = dict(embed_dim=64, num_blocks=1, num_heads=1)
NETWORKS = ("inception", "i3d", "avsync", "imagebind_vision", "imagebind_audio", "imagebind_text")
# `tiny` (tests, a first look): the networks whose widths are parameters, at a few channels; the
# Inception networks have no small form and are left out.
TINY_NETWORKS = ("avsync", "imagebind_vision", "imagebind_audio", "imagebind_text")
AVSYNC15_TEST_VIDEOS, CLIPS_PER_VIDEO, AVSYNC15_CLASSES = 150, 3, 15


def zeros_like_abstract(make):
  """Build a module abstractly and fill it with zeros: full sizes without random-init cost."""
  abstract = nnx.eval_shape(make)
  graphdef, state = nnx.split(abstract)
  return nnx.merge(graphdef, jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), state))


def imagebind(tower: str, blocks: int | None = None, tiny: bool = False):
  """ImageBind-Huge's `tower` at full width (`blocks` of its blocks, default all); the two other
  towers tiny (memory of this machine); all three tiny with `tiny`."""
  from asva_jax.eval.imagebind import ImageBind, ImageBindConfig
  small = {f"{t}_{k}": v for t in ("vision", "text", "audio") if tiny or t != tower
           for k, v in TINY_TOWER.items()}
  if blocks:
    small[f"{tower}_num_blocks"] = blocks
  return zeros_like_abstract(lambda: ImageBind(ImageBindConfig(**small), rngs=nnx.Rngs(0)))


def build(name: str, vision_blocks: int | None = None, tiny: bool = False):
  """(module, call(module, n) -> output, unit) for one network at full size (or `tiny`)."""
  video = lambda n: jnp.full((n, FRAMES, 256, 256, 3), 0.5, jnp.float32)
  mel = lambda n: jnp.zeros((n, 128, 204), jnp.float32)
  if name == "inception":
    from asva_jax.eval.inception import FIDInceptionV3
    return zeros_like_abstract(FIDInceptionV3), lambda m, n: D.fid_features(m, video(n)[:, :1]), "frame"
  if name == "i3d":
    from asva_jax.eval.i3d import InceptionI3d
    return zeros_like_abstract(InceptionI3d), lambda m, n: D.fvd_features(m, video(n)), "clip"
  if name == "avsync":
    from asva_jax.eval.avsync_classifier import AVSyncClassifier
    make = (lambda: AVSyncClassifier((8, 8, 8, 8, 16), (8, 8, 8, 8, 16), head_dim=16)) if tiny else AVSyncClassifier
    return zeros_like_abstract(make), lambda m, n: D.avsync_scores(m, video(n), mel(n)), "clip"
  if name == "imagebind_vision":
    return (imagebind("vision", vision_blocks, tiny), lambda m, n: D.image_embeddings(m, video(n)[:, :1]),
            "frame")
  if name == "imagebind_audio":
    return imagebind("audio", tiny=tiny), lambda m, n: D.audio_embeddings(m, mel(n)), "clip"
  if name == "imagebind_text":
    return (imagebind("text", tiny=tiny), lambda m, n: D.text_embeddings(m, jnp.ones((n, 77), jnp.int32)),
            "prompt")
  raise app.UsageError(f"unknown network {name}")


def seconds_per_item(module, call, n: int, repeats: int) -> float:
  jax.block_until_ready(call(module, n))  # compile, warm up
  start = time.perf_counter()
  for _ in range(repeats):
    jax.block_until_ready(call(module, n))
  return (time.perf_counter() - start) / (repeats * n)


def measure(name: str, batches, repeats: int, vision_blocks: int | None = None,
            tiny: bool = False) -> tuple[dict[int, float], str, float]:
  """({batch: seconds per item}, unit, scale) of one network; `scale` > 1 where a shallower
  ImageBind vision tower was timed and scaled to its 32 blocks (a ViT block costs the same at
  every depth)."""
  module, call, unit = build(name, vision_blocks, tiny)
  scale = 32 / vision_blocks if name == "imagebind_vision" and vision_blocks and not tiny else 1.0
  per_item = {n: scale * seconds_per_item(module, call, n, repeats) for n in sorted(set(batches))}
  del module
  gc.collect()
  return per_item, unit, scale


def protocol_seconds(per_item: dict[str, float], clips: int, classes: int) -> dict[str, float]:
  """Seconds of each network over the protocol (reference + generated passes)."""
  uses = {"inception": 2 * FRAMES * clips, "i3d": 2 * clips, "avsync": 2 * clips,
          "imagebind_vision": (FRAMES + 1) * clips, "imagebind_audio": 2 * clips, "imagebind_text": classes}
  return {name: per_item[name] * uses[name] for name in per_item}


def main(argv, fv: flags.FlagValues = flags.FLAGS):
  del argv
  from tqdm import tqdm  # only the command's progress bar: the report imports this module without it
  batch, repeats = fv.batch, fv.repeats
  device = jax.devices()[0]
  print(f"backend: {jax.default_backend()} ({device.device_kind}), {repeats} timed call(s) after a warm-up; "
        f"full-size networks, zero weights")
  per_item = {1: {}, batch: {}}
  print(f"\n{'network':18s} {'unit':7s} {'items/s b=1':>12s} {f'items/s b={batch}':>12s}", flush=True)
  for name in tqdm(fv.networks, desc="networks"):
    seconds, unit, scale = measure(name, per_item, repeats, fv.vision_blocks)
    for n, s in seconds.items():
      per_item[n][name] = s
    note = f"  ({fv.vision_blocks} of 32 blocks timed, scaled)" if scale != 1.0 else ""
    tqdm.write(f"{name:18s} {unit:7s} {1 / per_item[1][name]:12.3f} {1 / per_item[batch][name]:12.3f}{note}")
  clips = fv.videos * fv.clips
  print(f"\nAVSync15 protocol: {fv.videos} videos x {fv.clips} clips = {clips} generated clips "
        f"(+ as many reference clips), all metrics")
  for n in sorted(per_item):
    seconds = protocol_seconds(per_item[n], clips, fv.classes)
    total = sum(seconds.values())
    per_clip = total / clips
    parts = ", ".join(f"{k} {v / 60:.1f} min" for k, v in seconds.items())
    print(f"  batch {n}: whole metric set {1 / per_clip:.4f} generated clips/s "
          f"({per_clip:.1f} s per clip incl. its reference); protocol {total / 3600:.2f} h ({parts})")


if __name__ == "__main__":
  runner.run(main, define_flags=define_flags)
