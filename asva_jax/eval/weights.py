"""Loading the detectors' PyTorch state dicts into NNX modules.

`convert.state_dict.load_into` maps 2-D and 4-D kernels; the detectors also have
3-D convolutions, whose PyTorch weight (out, in, t, h, w) becomes our channels-last
kernel (t, h, w, in, out). `Conv3dView` shows a state dict with those tensors
already transposed, under the NNX leaf name `kernel`, so `load_into` copies them
as any other tensor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import numpy as np
from flax import nnx

from convert.state_dict import load_into, shape_of


class Conv3dView(Mapping):
  """`state_dict` with every 5-D `*.weight` renamed `*.kernel` and moved channels-last."""

  def __init__(self, state_dict: Mapping):
    self.base = state_dict
    self.renamed = {}
    for key in state_dict:
      if key.endswith(".weight") and len(shape_of(state_dict, key)) == 5:
        self.renamed[key[:-len("weight")] + "kernel"] = key
    self.keys_ = [k for k in state_dict if k not in set(self.renamed.values())] + list(self.renamed)

  def __getitem__(self, key: str) -> np.ndarray:
    if key in self.renamed:
      return np.transpose(np.asarray(self.base[self.renamed[key]]), (2, 3, 4, 1, 0))
    return self.base[key]

  def shape(self, key: str) -> tuple[int, ...]:
    if key in self.renamed:
      o, i, t, h, w = shape_of(self.base, self.renamed[key])
      return (t, h, w, i, o)
    return shape_of(self.base, key)

  def __iter__(self) -> Iterator[str]:
    return iter(self.keys_)

  def __len__(self) -> int:
    return len(self.keys_)


def load_weights(module: nnx.Module, state_dict: Mapping, source: str,
                 rename: Callable[[str], str] | None = None,
                 ignore: Callable[[str], bool] | None = None) -> nnx.Module:
  """Every variable of `module` (parameters and buffers such as BatchNorm statistics) from
  `state_dict`; a ConversionError names missing, unexpected and mis-shaped keys."""
  return load_into(module, Conv3dView(state_dict), source, rename=rename, kind=nnx.Variable, ignore=ignore)
