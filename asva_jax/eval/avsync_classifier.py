"""The AVSync classifier behind RelSync and AlignSync (docs/reference.md §9.3), channels-last.

    score = head([AudioConv2DNet(mel), VideoR2Plus1DNet(video)])[:, 0]

Audio: a 7x7/2 conv stem and four plain (no residual) two-conv blocks, mean over
frequency and time. Video: a (3, 7, 7) conv stem with a spatial max pool, four stages
of two residual R(2+1)D blocks (spatial (1, 3, 3) then temporal (3, 1, 1) convolutions;
stages 3-5 halve time and space), mean over time and space. Head: three Linear layers
with ReLUs. Every BatchNorm uses its running statistics (eval mode), eps 1e-5.

Attribute names are the original state dict's (`conv1.0`, `block1.bn1`, `conv3x.0.res_conv`,
`fc.6`, ...), so `load_avsync_classifier` reads the released `modules/` folders directly;
the widths (64/128/256/512 and the head's 512 in the release) come from the tensors.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
from flax import nnx

from asva_jax.eval.errors import EvalModelError
from asva_jax.eval.layers import BatchNorm, Conv, Linear, load_network, max_pool
from asva_jax.torch_weights import open_state_dict

MODULES = ("audio_encoder", "video_encoder", "head")
WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")


class Slot(nnx.Module):
  """A parameter-free position of a PyTorch Sequential (ReLU, Dropout at eval, MaxPool)."""

  def __init__(self, fn=None):
    self.fn = fn

  def __call__(self, x: jax.Array) -> jax.Array:
    return x if self.fn is None else self.fn(x)


def max_pool_133(x: jax.Array) -> jax.Array:
  """MaxPool3d kernel (1, 3, 3), stride (1, 2, 2), padding (0, 1, 1) on (B, T, H, W, C)."""
  return max_pool(x, (1, 3, 3), (1, 2, 2), (0, 1, 1))


class Basic2DBlock(nnx.Module):
  """conv3x3 (strided) + BN + ReLU, conv3x3 + BN + ReLU; no residual."""

  def __init__(self, cin: int, cout: int, stride: int):
    self.conv1 = Conv(cin, cout, (3, 3), stride, 1)
    self.bn1 = BatchNorm(cout)
    self.conv2 = Conv(cout, cout, (3, 3), 1, 1)
    self.bn2 = BatchNorm(cout)

  def __call__(self, x: jax.Array) -> jax.Array:
    x = jax.nn.relu(self.bn1(self.conv1(x)))
    return jax.nn.relu(self.bn2(self.conv2(x)))


class AudioConv2DNet(nnx.Module):
  """mel (B, 128, 204) -> (B, widths[-1]); `widths` = stem, block1..block4 (64, 64, 128, 256, 512)."""

  def __init__(self, widths: Sequence[int] = (64, 64, 128, 256, 512)):
    w = list(widths)
    self.conv1 = nnx.List([Conv(1, w[0], (7, 7), 2, 3),
                           BatchNorm(w[0]), Slot(jax.nn.relu)])
    self.block1 = Basic2DBlock(w[0], w[1], 2)
    self.block2 = Basic2DBlock(w[1], w[2], 2)
    self.block3 = Basic2DBlock(w[2], w[3], 2)
    self.block4 = Basic2DBlock(w[3], w[4], 1)

  def __call__(self, mel: jax.Array) -> jax.Array:
    x = mel[..., None]
    for layer in self.conv1:
      x = layer(x)
    for block in (self.block1, self.block2, self.block3, self.block4):
      x = block(x)
    return x.mean(axis=(1, 2))


class BasicR2P1DBlock(nnx.Module):
  """Two (spatial conv, BN, ReLU, temporal conv) halves, a residual (1x1x1 strided conv when the
  shape changes), then BN and ReLU on the sum."""

  def __init__(self, cin: int, cout: int, stride: int = 1):
    s = stride
    self.spt_conv1 = Conv(cin, cout, (1, 3, 3), (1, s, s), (0, 1, 1))
    self.spt_bn1 = BatchNorm(cout)
    self.tmp_conv1 = Conv(cout, cout, (3, 1, 1), (s, 1, 1), (1, 0, 0))
    self.tmp_bn1 = BatchNorm(cout)
    self.spt_conv2 = Conv(cout, cout, (1, 3, 3), 1, (0, 1, 1))
    self.spt_bn2 = BatchNorm(cout)
    self.tmp_conv2 = Conv(cout, cout, (3, 1, 1), 1, (1, 0, 0))
    self.out_bn = BatchNorm(cout)
    self.res_conv = (Conv(cin, cout, (1, 1, 1), s)
                     if cin != cout or s != 1 else None)

  def __call__(self, x: jax.Array) -> jax.Array:
    y = self.tmp_conv1(jax.nn.relu(self.spt_bn1(self.spt_conv1(x))))
    y = jax.nn.relu(self.tmp_bn1(y))
    y = self.tmp_conv2(jax.nn.relu(self.spt_bn2(self.spt_conv2(y))))
    res = x if self.res_conv is None else self.res_conv(x)
    return jax.nn.relu(self.out_bn(y + res))


class VideoR2Plus1DNet(nnx.Module):
  """video (B, T, H, W, 3) -> (B, widths[-1]); `widths` = stem, conv2x..conv5x (64, 64, 128, 256, 512)."""

  def __init__(self, widths: Sequence[int] = (64, 64, 128, 256, 512)):
    w = list(widths)
    self.conv1 = nnx.List([Conv(3, w[0], (3, 7, 7), (1, 2, 2), (1, 3, 3)), BatchNorm(w[0]),
                           Slot(jax.nn.relu), Slot(max_pool_133)])
    stage = lambda cin, cout, s: nnx.List([BasicR2P1DBlock(cin, cout, s),
                                           BasicR2P1DBlock(cout, cout)])
    self.conv2x = stage(w[0], w[1], 1)
    self.conv3x = stage(w[1], w[2], 2)
    self.conv4x = stage(w[2], w[3], 2)
    self.conv5x = stage(w[3], w[4], 2)

  def __call__(self, video: jax.Array) -> jax.Array:
    x = video
    for layer in self.conv1:
      x = layer(x)
    for stage in (self.conv2x, self.conv3x, self.conv4x, self.conv5x):
      for block in stage:
        x = block(x)
    return x.mean(axis=(1, 2, 3))


class FCHead(nnx.Module):
  """[audio, video] (B, 2 dim) -> Linear dim -> ReLU -> Linear dim/2 -> ReLU -> Linear out_dim."""

  def __init__(self, dim: int = 512, out_dim: int = 1):
    self.fc = nnx.List([Linear(2 * dim, dim), Slot(), Slot(jax.nn.relu),
                        Linear(dim, dim // 2), Slot(), Slot(jax.nn.relu),
                        Linear(dim // 2, out_dim)])

  def __call__(self, audio_emb: jax.Array, video_emb: jax.Array) -> jax.Array:
    x = jnp.concatenate([audio_emb, video_emb], axis=-1)
    for layer in self.fc:
      x = layer(x)
    return x


class AVSyncClassifier(nnx.Module):
  """(mel (B, 128, 204), video (B, T, H, W, 3) CLIP-normalised) -> sync score (B,)."""

  def __init__(self, audio_widths: Sequence[int] = (64, 64, 128, 256, 512),
               video_widths: Sequence[int] = (64, 64, 128, 256, 512), head_dim: int = 512,
               out_dim: int = 1):
    if 2 * head_dim != audio_widths[-1] + video_widths[-1]:
      raise ValueError(f"AVSyncClassifier: head input {2 * head_dim} != audio {audio_widths[-1]} + "
                       f"video {video_widths[-1]} features")
    self.audio_encoder = AudioConv2DNet(audio_widths)
    self.video_encoder = VideoR2Plus1DNet(video_widths)
    self.head = FCHead(head_dim, out_dim)

  def __call__(self, mel: jax.Array, video: jax.Array) -> jax.Array:
    if mel.ndim == 4 and mel.shape[1] == 1:
      mel = mel[:, 0]
    return self.head(self.audio_encoder(mel), self.video_encoder(video))[:, 0]


# --- loading the original `modules/` folders ------------------------------------------

def weights_file(folder: Path) -> Path:
  """The module's weights in `folder`: safetensors preferred, else the diffusers `.bin`."""
  if not folder.is_dir():
    raise EvalModelError(f"{folder}: missing (the AVSync classifier's modules/ folder needs "
                         f"{', '.join(MODULES)}/)")
  for name in WEIGHT_FILES:
    if (folder / name).is_file():
      return folder / name
  raise EvalModelError(f"{folder}: no weights file (looked for {', '.join(WEIGHT_FILES)})")


def _widths(sd: dict, source: Path, keys: Sequence[str]) -> list[int]:
  missing = [k for k in keys if k not in sd]
  if missing:
    raise EvalModelError(f"{source}: missing tensor {missing[0]} (not an AVSync classifier module?)")
  return [int(sd[k].shape[0]) for k in keys]


def load_avsync_classifier(modules_dir: str | os.PathLike) -> AVSyncClassifier:
  """The classifier from the original's `modules/{audio_encoder,video_encoder,head}` folders
  (`diffusion_pytorch_model.safetensors`, else `.bin` read with `torch.load(weights_only=True)`);
  every width is read off the tensors (the folders' config.json do not record them)."""
  root = Path(modules_dir)
  if not root.is_dir():
    raise EvalModelError(f"{root}: no such folder (the AVSync classifier's modules/ folder with "
                         f"{', '.join(MODULES)}/)")
  files = {name: weights_file(root / name) for name in MODULES}
  sds = {name: open_state_dict(path, what="AVSync classifier", error=EvalModelError)
         for name, path in files.items()}
  audio = _widths(sds["audio_encoder"], files["audio_encoder"],
                  ["conv1.0.weight"] + [f"block{i}.conv1.weight" for i in range(1, 5)])
  video = _widths(sds["video_encoder"], files["video_encoder"],
                  ["conv1.0.weight"] + [f"conv{i}x.0.spt_conv1.weight" for i in range(2, 6)])
  head = _widths(sds["head"], files["head"], ["fc.0.weight", "fc.6.weight"])
  try:
    model = nnx.eval_shape(lambda: AVSyncClassifier(audio, video, head[0], head[1]))
  except ValueError as e:
    raise EvalModelError(f"{root}: {e}") from e
  for name in MODULES:
    load_network(getattr(model, name), sds[name], str(files[name]))
  return model
