"""The FID InceptionV3 of the original evaluation (pytorch-fid's FID blocks), channels-last.

The original builds pytorch-fid's `InceptionV3(block_ids=[3], use_fid_inception=True)`
but drops its resize-to-299 and input normalisation: the network sees 229 x 229
frames in [-1, 1] (docs/reference.md §9.5.1), so Mixed_7c ends at 5 x 5 and the features are
its global average, 2048-d. Weights: pytorch-fid's `pt_inception-2015-12-05-*.pth`
(torchvision `Inception3` names, `Conv2d_1a_3x3.conv.weight` ... `fc.bias`).

Every width is read off the file (reduced test models too); each conv's default
is the real network's. The FID blocks differ from torchvision's: the average-pool
branches of Mixed_5*, 6b-6e and 7b leave padding out of the count, Mixed_7c's pool
branch is a 3 x 3 max pool. BatchNorm eps is 1e-3.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
from flax import nnx

from asva_jax.eval.errors import EvalModelError
from asva_jax.eval.layers import BatchNorm, Conv, Linear, avg_pool, load_network, max_pool
from asva_jax.torch_weights import open_state_dict

Widths = Callable[[str, int], int]


class BasicConv2d(nnx.Module):
  """conv (no bias) -> BatchNorm (eps 1e-3) -> ReLU."""

  def __init__(self, cin: int, cout: int, kernel, stride=1, padding=0):
    kernel = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
    self.conv = Conv(cin, cout, kernel, stride, padding)
    self.bn = BatchNorm(cout, eps=1e-3)
    self.out_channels = cout

  def __call__(self, x: jax.Array) -> jax.Array:
    return jax.nn.relu(self.bn(self.conv(x)))


def _pool_mean(x):  # 3x3 average, stride 1, padding 1, padding not counted (the FID blocks)
  return avg_pool(x, (3, 3), (1, 1), 1, count_include_pad=False)


class InceptionA(nnx.Module):
  """Mixed_5b/5c/5d."""

  def __init__(self, cin: int, width: Widths, pool_features: int):
    c = lambda name, default: width(name, default)
    self.branch1x1 = BasicConv2d(cin, c("branch1x1", 64), 1)
    self.branch5x5_1 = BasicConv2d(cin, c("branch5x5_1", 48), 1)
    self.branch5x5_2 = BasicConv2d(self.branch5x5_1.out_channels, c("branch5x5_2", 64), 5, padding=2)
    self.branch3x3dbl_1 = BasicConv2d(cin, c("branch3x3dbl_1", 64), 1)
    self.branch3x3dbl_2 = BasicConv2d(self.branch3x3dbl_1.out_channels, c("branch3x3dbl_2", 96), 3,
                                      padding=1)
    self.branch3x3dbl_3 = BasicConv2d(self.branch3x3dbl_2.out_channels, c("branch3x3dbl_3", 96), 3,
                                      padding=1)
    self.branch_pool = BasicConv2d(cin, c("branch_pool", pool_features), 1)
    self.out_channels = sum(b.out_channels for b in (self.branch1x1, self.branch5x5_2,
                                                     self.branch3x3dbl_3, self.branch_pool))

  def __call__(self, x):
    return jnp.concatenate([
        self.branch1x1(x),
        self.branch5x5_2(self.branch5x5_1(x)),
        self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
        self.branch_pool(_pool_mean(x)),
    ], axis=-1)


class InceptionB(nnx.Module):
  """Mixed_6a: the 35 -> 17 grid reduction."""

  def __init__(self, cin: int, width: Widths):
    self.branch3x3 = BasicConv2d(cin, width("branch3x3", 384), 3, stride=2)
    self.branch3x3dbl_1 = BasicConv2d(cin, width("branch3x3dbl_1", 64), 1)
    self.branch3x3dbl_2 = BasicConv2d(self.branch3x3dbl_1.out_channels, width("branch3x3dbl_2", 96), 3,
                                      padding=1)
    self.branch3x3dbl_3 = BasicConv2d(self.branch3x3dbl_2.out_channels, width("branch3x3dbl_3", 96), 3,
                                      stride=2)
    self.out_channels = self.branch3x3.out_channels + self.branch3x3dbl_3.out_channels + cin

  def __call__(self, x):
    return jnp.concatenate([
        self.branch3x3(x),
        self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
        max_pool(x, (3, 3), (2, 2)),
    ], axis=-1)


class InceptionC(nnx.Module):
  """Mixed_6b-6e: factorised 7x7 convolutions."""

  def __init__(self, cin: int, width: Widths, channels_7x7: int):
    def unit(name, cin_, default, kernel, padding=0):
      return BasicConv2d(cin_, width(name, default), kernel, padding=padding)
    c7 = channels_7x7
    self.branch1x1 = unit("branch1x1", cin, 192, 1)
    self.branch7x7_1 = unit("branch7x7_1", cin, c7, 1)
    self.branch7x7_2 = unit("branch7x7_2", self.branch7x7_1.out_channels, c7, (1, 7), (0, 3))
    self.branch7x7_3 = unit("branch7x7_3", self.branch7x7_2.out_channels, 192, (7, 1), (3, 0))
    self.branch7x7dbl_1 = unit("branch7x7dbl_1", cin, c7, 1)
    self.branch7x7dbl_2 = unit("branch7x7dbl_2", self.branch7x7dbl_1.out_channels, c7, (7, 1), (3, 0))
    self.branch7x7dbl_3 = unit("branch7x7dbl_3", self.branch7x7dbl_2.out_channels, c7, (1, 7), (0, 3))
    self.branch7x7dbl_4 = unit("branch7x7dbl_4", self.branch7x7dbl_3.out_channels, c7, (7, 1), (3, 0))
    self.branch7x7dbl_5 = unit("branch7x7dbl_5", self.branch7x7dbl_4.out_channels, 192, (1, 7), (0, 3))
    self.branch_pool = unit("branch_pool", cin, 192, 1)
    self.out_channels = sum(b.out_channels for b in (self.branch1x1, self.branch7x7_3,
                                                     self.branch7x7dbl_5, self.branch_pool))

  def __call__(self, x):
    dbl = x
    for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                  self.branch7x7dbl_5):
      dbl = layer(dbl)
    return jnp.concatenate([
        self.branch1x1(x),
        self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x))),
        dbl,
        self.branch_pool(_pool_mean(x)),
    ], axis=-1)


class InceptionD(nnx.Module):
  """Mixed_7a: the 17 -> 8 grid reduction."""

  def __init__(self, cin: int, width: Widths):
    def unit(name, cin_, default, kernel, stride=1, padding=0):
      return BasicConv2d(cin_, width(name, default), kernel, stride, padding)
    self.branch3x3_1 = unit("branch3x3_1", cin, 192, 1)
    self.branch3x3_2 = unit("branch3x3_2", self.branch3x3_1.out_channels, 320, 3, stride=2)
    self.branch7x7x3_1 = unit("branch7x7x3_1", cin, 192, 1)
    self.branch7x7x3_2 = unit("branch7x7x3_2", self.branch7x7x3_1.out_channels, 192, (1, 7), padding=(0, 3))
    self.branch7x7x3_3 = unit("branch7x7x3_3", self.branch7x7x3_2.out_channels, 192, (7, 1), padding=(3, 0))
    self.branch7x7x3_4 = unit("branch7x7x3_4", self.branch7x7x3_3.out_channels, 192, 3, stride=2)
    self.out_channels = self.branch3x3_2.out_channels + self.branch7x7x3_4.out_channels + cin

  def __call__(self, x):
    b7 = x
    for layer in (self.branch7x7x3_1, self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
      b7 = layer(b7)
    return jnp.concatenate([self.branch3x3_2(self.branch3x3_1(x)), b7, max_pool(x, (3, 3), (2, 2))],
                           axis=-1)


class InceptionE(nnx.Module):
  """Mixed_7b (average pool, padding not counted) and Mixed_7c (`max_pool_branch`: 3x3 max pool)."""

  def __init__(self, cin: int, width: Widths, max_pool_branch: bool):
    def unit(name, cin_, default, kernel, padding=0):
      return BasicConv2d(cin_, width(name, default), kernel, padding=padding)
    self.max_pool_branch = max_pool_branch
    self.branch1x1 = unit("branch1x1", cin, 320, 1)
    self.branch3x3_1 = unit("branch3x3_1", cin, 384, 1)
    c = self.branch3x3_1.out_channels
    self.branch3x3_2a = unit("branch3x3_2a", c, 384, (1, 3), (0, 1))
    self.branch3x3_2b = unit("branch3x3_2b", c, 384, (3, 1), (1, 0))
    self.branch3x3dbl_1 = unit("branch3x3dbl_1", cin, 448, 1)
    self.branch3x3dbl_2 = unit("branch3x3dbl_2", self.branch3x3dbl_1.out_channels, 384, 3, 1)
    c = self.branch3x3dbl_2.out_channels
    self.branch3x3dbl_3a = unit("branch3x3dbl_3a", c, 384, (1, 3), (0, 1))
    self.branch3x3dbl_3b = unit("branch3x3dbl_3b", c, 384, (3, 1), (1, 0))
    self.branch_pool = unit("branch_pool", cin, 192, 1)
    self.out_channels = sum(b.out_channels for b in (
        self.branch1x1, self.branch3x3_2a, self.branch3x3_2b, self.branch3x3dbl_3a, self.branch3x3dbl_3b,
        self.branch_pool))

  def __call__(self, x):
    b3 = self.branch3x3_1(x)
    dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
    pooled = max_pool(x, (3, 3), (1, 1), 1) if self.max_pool_branch else _pool_mean(x)
    return jnp.concatenate([
        self.branch1x1(x),
        self.branch3x3_2a(b3), self.branch3x3_2b(b3),
        self.branch3x3dbl_3a(dbl), self.branch3x3dbl_3b(dbl),
        self.branch_pool(pooled),
    ], axis=-1)


class FIDInceptionV3(nnx.Module):
  """(B, 229, 229, 3) in [-1, 1] -> (B, 2048) pool features (Mixed_7c, global mean).

  `widths` maps a conv's name (e.g. "Mixed_5b.branch_pool") to its output channels
  where it differs from the real network; `num_classes` is the unused `fc`'s size,
  kept so the module holds exactly the weight file's tensors.
  """

  def __init__(self, widths: Mapping[str, int] | None = None, in_channels: int = 3,
               num_classes: int = 1008):
    widths = dict(widths or {})

    def named(prefix: str) -> Widths:
      return lambda name, default: widths.get(f"{prefix}.{name}" if prefix else name, default)

    top = named("")
    self.Conv2d_1a_3x3 = BasicConv2d(in_channels, top("Conv2d_1a_3x3", 32), 3, stride=2)
    self.Conv2d_2a_3x3 = BasicConv2d(self.Conv2d_1a_3x3.out_channels, top("Conv2d_2a_3x3", 32), 3)
    self.Conv2d_2b_3x3 = BasicConv2d(self.Conv2d_2a_3x3.out_channels, top("Conv2d_2b_3x3", 64), 3,
                                     padding=1)
    self.Conv2d_3b_1x1 = BasicConv2d(self.Conv2d_2b_3x3.out_channels, top("Conv2d_3b_1x1", 80), 1)
    self.Conv2d_4a_3x3 = BasicConv2d(self.Conv2d_3b_1x1.out_channels, top("Conv2d_4a_3x3", 192), 3)
    c = self.Conv2d_4a_3x3.out_channels
    self.Mixed_5b = InceptionA(c, named("Mixed_5b"), 32)
    self.Mixed_5c = InceptionA(self.Mixed_5b.out_channels, named("Mixed_5c"), 64)
    self.Mixed_5d = InceptionA(self.Mixed_5c.out_channels, named("Mixed_5d"), 64)
    self.Mixed_6a = InceptionB(self.Mixed_5d.out_channels, named("Mixed_6a"))
    self.Mixed_6b = InceptionC(self.Mixed_6a.out_channels, named("Mixed_6b"), 128)
    self.Mixed_6c = InceptionC(self.Mixed_6b.out_channels, named("Mixed_6c"), 160)
    self.Mixed_6d = InceptionC(self.Mixed_6c.out_channels, named("Mixed_6d"), 160)
    self.Mixed_6e = InceptionC(self.Mixed_6d.out_channels, named("Mixed_6e"), 192)
    self.Mixed_7a = InceptionD(self.Mixed_6e.out_channels, named("Mixed_7a"))
    self.Mixed_7b = InceptionE(self.Mixed_7a.out_channels, named("Mixed_7b"), False)
    self.Mixed_7c = InceptionE(self.Mixed_7b.out_channels, named("Mixed_7c"), True)
    self.feature_dim = self.Mixed_7c.out_channels
    self.fc = Linear(self.feature_dim, num_classes)

  def blocks(self, x: jax.Array) -> list[jax.Array]:
    """The outputs of pytorch-fid's four blocks: after each max pool, Mixed_6e, and the features."""
    x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
    block0 = max_pool(x, (3, 3), (2, 2))
    block1 = max_pool(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(block0)), (3, 3), (2, 2))
    x = block1
    for layer in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
                  self.Mixed_6d, self.Mixed_6e):
      x = layer(x)
    block2 = x
    x = self.Mixed_7c(self.Mixed_7b(self.Mixed_7a(x)))
    return [block0, block1, block2, x.mean(axis=(1, 2))]

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.blocks(x)[-1]


def widths_from_shapes(shapes: Mapping[str, tuple]) -> tuple[dict[str, int], int, int]:
  """(conv widths, input channels, fc classes) read off a state dict's shapes."""
  widths = {k[:-len(".conv.weight")]: int(s[0]) for k, s in shapes.items() if k.endswith(".conv.weight")}
  in_channels = int(shapes["Conv2d_1a_3x3.conv.weight"][1]) if "Conv2d_1a_3x3.conv.weight" in shapes else 3
  num_classes = int(shapes["fc.weight"][0]) if "fc.weight" in shapes else 1008
  return widths, in_channels, num_classes


def load_inception(path: str | os.PathLike) -> FIDInceptionV3:
  """The FID Inception from pytorch-fid's weight file (`pt_inception-2015-12-05-*.pth`) or a
  `.safetensors` with the same names; AuxLogits tensors, if present, are ignored."""
  state = open_state_dict(path, what="FID Inception", error=EvalModelError)
  state = {k: state[k] for k in state if not k.startswith("AuxLogits.")}
  widths, in_channels, num_classes = widths_from_shapes({k: v.shape for k, v in state.items()})
  model = nnx.eval_shape(lambda: FIDInceptionV3(widths, in_channels, num_classes))
  return load_network(model, state, str(path))
