"""Checks our I3D against a TorchScript FVD detector on random clips.

    python -m asva_jax.eval.verify_i3d --detector models/i3d_torchscript.pt

The StyleGAN-V detector `i3d_torchscript.pt` was not available when `load_i3d`'s
mapping of it was written (docs/evaluation-networks.md); run this once with the
real file: it loads the file both ways, feeds the same clips in [-1, 1] to the
TorchScript module (`rescale=False, resize=False, return_features=True`, as the
original FVD calls it) and to ours, and fails unless the outputs agree.
The file's code runs (torch.jit.load): use a detector from a trusted source.
"""

from __future__ import annotations

import numpy as np
from absl import flags

from asva_jax.commands import runner
from asva_jax.eval.errors import EvalModelError

def define_flags(fv: flags.FlagValues = flags.FLAGS) -> None:
  flags.DEFINE_string("detector", None, "TorchScript I3D file (i3d_torchscript.pt).", flag_values=fv)
  flags.DEFINE_integer("clips", 2, "Random clips to compare.", flag_values=fv)
  flags.DEFINE_integer("frames", 12, "Frames per clip (the protocol's 12).", flag_values=fv)
  flags.DEFINE_integer("clip_seed", 0, "Seed of the random clips.", flag_values=fv)
  flags.DEFINE_float("rtol", 1e-4, "Largest accepted max|difference| / max|TorchScript output|.",
                     flag_values=fv)


def torchscript_logits(net, clips_cf: np.ndarray) -> np.ndarray:
  """The detector's output as the original FVD asks for it (plain call if it takes no options)."""
  import torch
  x = torch.from_numpy(clips_cf)
  with torch.no_grad():
    try:
      out = net(x, rescale=False, resize=False, return_features=True)
    except (RuntimeError, TypeError):
      out = net(x)
  return out.detach().cpu().numpy()


def detector_outputs(path: str, clips_cf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(ours, the TorchScript detector's) outputs for clips (B, 3, T, 224, 224) in [-1, 1]."""
  import torch
  from asva_jax.eval.i3d import features_and_logits, load_i3d
  model = load_i3d(path)
  net = torch.jit.load(str(path), map_location="cpu").eval()
  expected = torchscript_logits(net, clips_cf)
  _, ours = features_and_logits(model, clips_cf.transpose(0, 2, 3, 4, 1))
  ours = np.asarray(ours)
  if ours.shape != expected.shape:
    raise EvalModelError(f"{path}: the TorchScript detector returns {expected.shape}, our I3D {ours.shape}")
  return ours, expected


def compare(path: str, clips: int = 2, frames: int = 12, seed: int = 0) -> float:
  """max|ours − TorchScript| / max|TorchScript| on random clips in [-1, 1]."""
  x = np.random.default_rng(seed).uniform(-1, 1, (clips, 3, frames, 224, 224)).astype(np.float32)
  ours, expected = detector_outputs(path, x)
  return float(np.abs(ours - expected).max() / max(np.abs(expected).max(), 1e-30))


def main(argv, fv: flags.FlagValues = flags.FLAGS):
  del argv
  if not fv.detector:
    raise EvalModelError("--detector: give the TorchScript I3D file to check (i3d_torchscript.pt)")
  err = compare(fv.detector, fv.clips, fv.frames, fv.clip_seed)
  if not err <= fv.rtol:
    raise EvalModelError(f"{fv.detector}: our I3D differs from the TorchScript detector by {err:.3g} "
                         f"(relative, > --rtol {fv.rtol}); FVD computed with load_i3d would not be the original's")
  print(f"{fv.detector}: our I3D equals the TorchScript detector to {err:.3g} relative "
        f"({fv.clips} random clips of {fv.frames} frames)")


def run(argv=None) -> None:
  runner.run(main, argv, define_flags=define_flags)


if __name__ == "__main__":
  run()
