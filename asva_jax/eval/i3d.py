"""I3D (Inception-v1 inflated to 3-D), the FVD feature network, channels-last.

The layout and names are those of the piergiaj PyTorch port that the original
repository ships (`InceptionI3d`: `Conv3d_1a_7x7.conv3d.weight`, `Mixed_3b.b1a.bn.*`,
..., `logits.conv3d.{weight,bias}`): every `Unit3D` and max pool pads like
TensorFlow's "SAME", computed from the input size at each call (zeros, also
before max pools), BatchNorm eps 1e-5, a final (2, 7, 7) average pool, a 1x1x1
logits convolution with bias, then the mean over the remaining time steps.

The original FVD calls the StyleGAN-V TorchScript detector `i3d_torchscript.pt`
with `rescale=False, resize=False, return_features=True`, which gives its 400
Kinetics logits; `load_i3d` also reads that file (see `torchscript_names`), but
the file was not available to check it against: docs/evaluation-networks.md.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from asva_jax.eval.errors import EvalModelError
from asva_jax.eval.layers import BatchNorm, Conv, avg_pool, load_network
from asva_jax.torch_weights import is_torchscript, open_state_dict, read_torchscript, shape_of

# Inception modules of the real network: (name, out channels of b0, b1a, b1b, b2a, b2b, b3b).
MIXED = (
    ("Mixed_3b", (64, 96, 128, 16, 32, 32)),
    ("Mixed_3c", (128, 128, 192, 32, 96, 64)),
    ("Mixed_4b", (192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", (128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", (256, 160, 320, 32, 128, 128)),
    ("Mixed_5b", (256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", (384, 192, 384, 48, 128, 128)),
)
BRANCHES = ("b0", "b1a", "b1b", "b2a", "b2b", "b3b")
# Max pools (window, stride) placed before these modules.
POOL_BEFORE = {"Conv3d_2b_1x1": ((1, 3, 3), (1, 2, 2)), "Mixed_3b": ((1, 3, 3), (1, 2, 2)),
               "Mixed_4b": ((3, 3, 3), (2, 2, 2)), "Mixed_5b": ((2, 2, 2), (2, 2, 2))}


def same_pads(size: Sequence[int], window: Sequence[int], stride: Sequence[int]) -> list[tuple[int, int]]:
  """TensorFlow "SAME" padding of each axis, the smaller half first."""
  pads = []
  for n, k, s in zip(size, window, stride):
    total = max(k - s, 0) if n % s == 0 else max(k - n % s, 0)
    pads.append((total // 2, total - total // 2))
  return pads


def pad_same(x: jax.Array, window, stride) -> jax.Array:
  pads = same_pads(x.shape[1:-1], window, stride)
  return jnp.pad(x, [(0, 0)] + pads + [(0, 0)])


def max_pool_same(x: jax.Array, window, stride) -> jax.Array:
  """`MaxPool3dSamePadding`: zero padding (not -inf), then a plain max pool."""
  x = pad_same(x, window, stride)
  return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, *window, 1), (1, *stride, 1), "VALID")


class Unit3D(nnx.Module):
  """SAME-padded Conv3d (bias only for the logits) -> BatchNorm -> ReLU (the logits: neither)."""

  def __init__(self, cin: int, cout: int, kernel=(1, 1, 1), stride=(1, 1, 1), logits: bool = False,
               eps: float = 1e-5):
    self.window, self.step = tuple(kernel), tuple(stride)
    self.conv3d = Conv(cin, cout, kernel, stride, use_bias=logits)
    self.bn = None if logits else BatchNorm(cout, eps)
    self.out_channels = cout

  def __call__(self, x: jax.Array) -> jax.Array:
    x = self.conv3d(pad_same(x, self.window, self.step))
    return x if self.bn is None else jax.nn.relu(self.bn(x))


class InceptionModule(nnx.Module):
  def __init__(self, cin: int, widths: Sequence[int], eps: float):
    w0, w1a, w1b, w2a, w2b, w3b = widths
    self.b0 = Unit3D(cin, w0, eps=eps)
    self.b1a = Unit3D(cin, w1a, eps=eps)
    self.b1b = Unit3D(w1a, w1b, (3, 3, 3), eps=eps)
    self.b2a = Unit3D(cin, w2a, eps=eps)
    self.b2b = Unit3D(w2a, w2b, (3, 3, 3), eps=eps)
    self.b3b = Unit3D(cin, w3b, eps=eps)
    self.out_channels = w0 + w1b + w2b + w3b

  def __call__(self, x: jax.Array) -> jax.Array:
    return jnp.concatenate([
        self.b0(x),
        self.b1b(self.b1a(x)),
        self.b2b(self.b2a(x)),
        self.b3b(max_pool_same(x, (3, 3, 3), (1, 1, 1))),
    ], axis=-1)


class InceptionI3d(nnx.Module):
  """(B, T, 224, 224, 3) in [-1, 1] -> (B, num_classes) logits, averaged over time.

  `widths` maps a unit's name ("Conv3d_2c_3x3", "Mixed_4b.b1b") to its output
  channels where they differ from the real network.
  """

  def __init__(self, widths: Mapping[str, int] | None = None, in_channels: int = 3, num_classes: int = 400,
               eps: float = 1e-5):
    widths = dict(widths or {})
    w = lambda name, default: widths.get(name, default)
    self.Conv3d_1a_7x7 = Unit3D(in_channels, w("Conv3d_1a_7x7", 64), (7, 7, 7), (2, 2, 2), eps=eps)
    self.Conv3d_2b_1x1 = Unit3D(self.Conv3d_1a_7x7.out_channels, w("Conv3d_2b_1x1", 64), eps=eps)
    self.Conv3d_2c_3x3 = Unit3D(self.Conv3d_2b_1x1.out_channels, w("Conv3d_2c_3x3", 192), (3, 3, 3), eps=eps)
    cin = self.Conv3d_2c_3x3.out_channels
    self.mixed_names = tuple(name for name, _ in MIXED)
    for name, defaults in MIXED:
      module = InceptionModule(cin, [w(f"{name}.{b}", d) for b, d in zip(BRANCHES, defaults)], eps)
      setattr(self, name, module)
      cin = module.out_channels
    self.feature_dim = cin
    self.logits = Unit3D(cin, num_classes, logits=True)

  def features(self, x: jax.Array) -> jax.Array:
    """The (2, 7, 7) average pool before the logits (`extract_features`): (B, T', 1, 1, C) at 224 px."""
    for name in ("Conv3d_1a_7x7", "Conv3d_2b_1x1", "Conv3d_2c_3x3") + self.mixed_names:
      if name in POOL_BEFORE:
        x = max_pool_same(x, *POOL_BEFORE[name])
      x = getattr(self, name)(x)
    return avg_pool(x, (2, 7, 7), (1, 1, 1))

  def head(self, features: jax.Array) -> jax.Array:
    """Pooled features -> logits (B, num_classes): the 1x1x1 conv, then the mean over time."""
    x = self.logits(features)
    if x.shape[2:4] != (1, 1):
      raise ValueError(f"I3D: the logits grid is {x.shape[2:4]}, not 1x1: the input must be 224 x 224")
    return x[:, :, 0, 0, :].mean(axis=1)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.head(self.features(x))


def widths_from_shapes(shapes: Mapping[str, tuple]) -> tuple[dict[str, int], int, int]:
  """(unit widths, input channels, classes) read off the state dict's conv shapes."""
  widths = {k[:-len(".conv3d.weight")]: int(s[0]) for k, s in shapes.items() if k.endswith(".conv3d.weight")}
  in_channels = int(shapes["Conv3d_1a_7x7.conv3d.weight"][1]) if "Conv3d_1a_7x7.conv3d.weight" in shapes else 3
  num_classes = widths.pop("logits", 400)
  return widths, in_channels, num_classes


@nnx.jit
def features_and_logits(model: InceptionI3d, x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Pooled features and logits of clips (B, T, 224, 224, 3), compiled once per network and shape."""
  features = model.features(x)
  return features, model.head(features)


def unit_names() -> list[str]:
  """Our Unit3D names in the network's order (logits last)."""
  return (["Conv3d_1a_7x7", "Conv3d_2b_1x1", "Conv3d_2c_3x3"]
          + [f"{name}.{b}" for name, _ in MIXED for b in BRANCHES] + ["logits"])


BN_LEAVES = ("weight", "bias", "running_mean", "running_var")


def torchscript_names(state: Mapping[str, np.ndarray], source: str) -> dict[str, np.ndarray]:
  """A TorchScript I3D's state dict under our names, matched by structure.

  The names inside the StyleGAN-V detector are not known here, so tensors are
  matched by their order and role, which every port of the TF model keeps:
  a 5-D `<unit>.<conv>.weight` whose sibling `<unit>.<bn>.{weight,bias,running_mean,
  running_var}` exists is a conv + BatchNorm unit; the single 5-D weight without a
  BatchNorm sibling (and with a bias) is the logits. Units keep the file's order,
  which must be ours: stem convs, then per Inception module branch 0, 1 (1x1, 3x3),
  2 (1x1, 3x3), 3 (pool, 1x1). Shapes are checked afterwards by name.
  """
  parent = lambda key: key.rsplit(".", 2)[0] if key.count(".") >= 2 else ""
  convs = [k[:-len(".weight")] for k, v in state.items() if k.endswith(".weight") and np.ndim(v) == 5]
  bns = {}
  for key in state:
    head, _, leaf = key.rpartition(".")
    if leaf == "running_mean" and all(f"{head}.{l}" in state for l in BN_LEAVES):
      bns.setdefault(parent(key), head)
  units, logits = [], []
  for c in convs:
    (units if parent(c + ".weight") in bns else logits).append(c)
  names = unit_names()
  if len(logits) != 1 or len(units) != len(names) - 1:
    first = ", ".join(list(state)[:6])
    raise EvalModelError(
        f"{source}: cannot match this TorchScript I3D to InceptionI3d by structure: found {len(units)} "
        f"conv+BatchNorm units and {len(logits)} convolutions without BatchNorm (expected {len(names) - 1} "
        f"and 1); its first tensors: {first} ...")
  out = {}
  for ours, theirs in zip(names[:-1], units):
    out[f"{ours}.conv3d.weight"] = state[f"{theirs}.weight"]
    if f"{theirs}.bias" in state:
      out[f"{ours}.conv3d.bias"] = state[f"{theirs}.bias"]  # reported as unexpected by the shape check
    bn = bns[parent(theirs + ".weight")]
    for leaf in BN_LEAVES:
      out[f"{ours}.bn.{leaf}"] = state[f"{bn}.{leaf}"]
  for leaf in ("weight", "bias"):
    if f"{logits[0]}.{leaf}" in state:
      out[f"logits.conv3d.{leaf}"] = state[f"{logits[0]}.{leaf}"]
  return out


def _torchscript_eps(module) -> float:
  """The BatchNorm eps compiled into a TorchScript detector (1e-5 when it does not say)."""
  values = {float(m.eps) for _, m in module.named_modules()
            if getattr(m, "original_name", "").startswith("BatchNorm") and hasattr(m, "eps")}
  if len(values) > 1:
    raise EvalModelError(f"I3D TorchScript: BatchNorms with different eps {sorted(values)}")
  return values.pop() if values else 1e-5


def _strip_prefix(state: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
  """Drops a wrapper prefix shared by every key (`module.`, `i3d.`, ...) when our names follow it."""
  if "Conv3d_1a_7x7.conv3d.weight" in state:
    return state
  for key in state:
    if key.endswith("Conv3d_1a_7x7.conv3d.weight"):
      prefix = key[:-len("Conv3d_1a_7x7.conv3d.weight")]
      if all(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}
  return state


def load_i3d(path: str | os.PathLike) -> InceptionI3d:
  """I3D from a state dict with the piergiaj names (`.safetensors`, `.pth`/`.pt`/`.bin`) or from
  the StyleGAN-V TorchScript detector `i3d_torchscript.pt`.

  TorchScript archives are opened with `torch.jit.load`, which runs code stored in
  the file: give it only a detector file from a source you trust.
  """
  eps = 1e-5
  if is_torchscript(path):
    state, module = read_torchscript(path, "I3D", EvalModelError)
    eps = _torchscript_eps(module)
    state = _strip_prefix(state)
    if "Conv3d_1a_7x7.conv3d.weight" not in state:
      state = torchscript_names(state, str(path))
  else:
    state = _strip_prefix(open_state_dict(path, what="I3D", error=EvalModelError))
  widths, in_channels, num_classes = widths_from_shapes({k: shape_of(state, k) for k in state})
  model = nnx.eval_shape(lambda: InceptionI3d(widths, in_channels, num_classes, eps))
  return load_network(model, state, str(path))
