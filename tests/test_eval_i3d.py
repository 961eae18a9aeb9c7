"""I3D: parity with the original InceptionI3d, file formats (state dicts and TorchScript), errors."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from flax import nnx
from safetensors.numpy import load_file, save_file

from asva_jax.eval.errors import EvalModelError
from asva_jax.eval.i3d import InceptionI3d, load_i3d, same_pads
from asva_jax.eval.weights import export_state_dict, torch_shapes

DATA = Path(__file__).parent / "data" / "eval" / "i3d"
WEIGHTS = DATA / "i3d.safetensors"
RTOL = 1e-4
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def rel_err(actual, expected):
  return np.abs(np.asarray(actual, np.float64) - expected).max() / np.abs(expected).max()


@pytest.fixture(scope="module")
def model():
  return load_i3d(WEIGHTS)


@pytest.fixture(scope="module")
def io():
  return dict(np.load(DATA / "io.npz"))


def test_features_and_logits_match_original(model, io):
  coarse, tile = io["x_coarse"], io["x_tile"]
  x = np.repeat(np.repeat(coarse, 8, -2), 8, -1) + np.tile(tile, (1, 1, 1, 28, 28))  # (B, 3, T, 224, 224)
  features = nnx.jit(lambda m, x: m.features(x))(model, x.transpose(0, 2, 3, 4, 1))
  assert rel_err(np.asarray(features).transpose(0, 4, 1, 2, 3), io["avgpool_features"]) < RTOL
  logits = model.head(features)
  assert logits.shape == io["logits"].shape
  assert rel_err(logits, io["logits"]) < RTOL


def test_same_padding_is_tensorflow_s():
  # 224 / stride 2 / kernel 7 -> 5 total, 2 before; 12 frames / stride 1 / kernel 3 -> (1, 1);
  # 7 / stride 2 / kernel 3 (odd size) -> 2 total.
  assert same_pads((224, 12, 7), (7, 3, 3), (2, 1, 2)) == [(2, 3), (1, 1), (1, 1)]
  assert same_pads((6,), (2,), (2,)) == [(0, 0)]


def test_full_size_keys():
  full = {k: tuple(v) for k, v in json.loads((DATA / "full_size_keys.json").read_text()).items()}
  counters = {k for k in full if k.endswith("num_batches_tracked")}
  model = nnx.eval_shape(lambda: InceptionI3d())
  assert torch_shapes(model) == {k: s for k, s in full.items() if k not in counters}
  assert model.feature_dim == 1024


def test_round_trip_and_prefixed_pth(model, tmp_path):
  original = load_file(str(WEIGHTS))
  exported = export_state_dict(model)
  assert set(exported) == {k for k in original if not k.endswith("num_batches_tracked")}
  for key, value in exported.items():
    np.testing.assert_array_equal(value, original[key], err_msg=key)
  torch.save({"state_dict": {f"module.{k}": torch.from_numpy(v) for k, v in original.items()}},
             tmp_path / "i3d.pth")
  again = export_state_dict(load_i3d(tmp_path / "i3d.pth"))
  for key, value in exported.items():
    np.testing.assert_array_equal(again[key], value, err_msg=key)


class _Unit(torch.nn.Module):
  """A unit named like another I3D port: `conv3d` + `batch3d` (or a biased conv alone)."""

  def __init__(self, state, prefix, eps):
    super().__init__()
    w = torch.from_numpy(state[f"{prefix}.conv3d.weight"])
    self.conv3d = torch.nn.Conv3d(w.shape[1], w.shape[0], tuple(w.shape[2:]),
                                  bias=f"{prefix}.conv3d.bias" in state)
    self.conv3d.weight.data.copy_(w)
    if self.conv3d.bias is not None:
      self.conv3d.bias.data.copy_(torch.from_numpy(state[f"{prefix}.conv3d.bias"]))
    else:
      self.batch3d = torch.nn.BatchNorm3d(w.shape[0], eps=eps)
      for leaf in ("weight", "bias", "running_mean", "running_var"):
        getattr(self.batch3d, leaf).data.copy_(torch.from_numpy(state[f"{prefix}.bn.{leaf}"]))

  def forward(self, x):
    return x


class _OtherPort(torch.nn.Module):
  """Our weights under different names, logits last, as a TorchScript detector might hold them."""

  def __init__(self, state, eps=1e-5, drop_last_module=False):
    super().__init__()
    for name in ("Conv3d_1a_7x7", "Conv3d_2b_1x1", "Conv3d_2c_3x3"):
      setattr(self, name.lower(), _Unit(state, name, eps))
    mixed = sorted({k.split(".")[0] for k in state if k.startswith("Mixed_")})
    for name in mixed[:-1] if drop_last_module else mixed:
      block = torch.nn.Module()
      block.branch_0 = _Unit(state, f"{name}.b0", eps)
      block.branch_1 = torch.nn.Sequential(_Unit(state, f"{name}.b1a", eps), _Unit(state, f"{name}.b1b", eps))
      block.branch_2 = torch.nn.Sequential(_Unit(state, f"{name}.b2a", eps), _Unit(state, f"{name}.b2b", eps))
      block.branch_3 = torch.nn.Sequential(torch.nn.MaxPool3d(3), _Unit(state, f"{name}.b3b", eps))
      setattr(self, name.lower(), block)
    self.conv3d_0c_1x1 = _Unit(state, "logits", eps)

  def forward(self, x, rescale: bool = False, resize: bool = False, return_features: bool = False):
    return x


def test_torchscript_detector_by_structure(model, tmp_path):
  """Another port's names, logits last, BatchNorm eps 1e-3 compiled in: matched by structure, eps read."""
  path = tmp_path / "i3d_torchscript.pt"
  torch.jit.save(torch.jit.script(_OtherPort(load_file(str(WEIGHTS)), eps=1e-3).eval()), str(path))
  loaded = load_i3d(path)
  assert loaded.Conv3d_1a_7x7.bn.eps == 1e-3 and loaded.Mixed_5c.b2b.bn.eps == 1e-3
  ours = export_state_dict(model)
  exported = export_state_dict(loaded)
  assert set(exported) == set(ours)
  for key, value in exported.items():
    np.testing.assert_array_equal(value, ours[key], err_msg=key)


def test_torchscript_of_another_shape_is_refused(tmp_path):
  path = tmp_path / "short.pt"
  torch.jit.save(torch.jit.script(_OtherPort(load_file(str(WEIGHTS)), drop_last_module=True).eval()),
                 str(path))
  with pytest.raises(EvalModelError, match="cannot match this TorchScript I3D"):
    load_i3d(path)


def test_mismatched_and_missing_files(tmp_path):
  state = load_file(str(WEIGHTS))
  del state["Mixed_4c.b2b.bn.running_var"]
  state["Mixed_4c.b0.bn.bias"] = np.zeros(5, np.float32)
  save_file(state, str(tmp_path / "bad.safetensors"))
  with pytest.raises(EvalModelError) as e:
    load_i3d(tmp_path / "bad.safetensors")
  assert "bad.safetensors" in str(e.value) and "1 missing: Mixed_4c.b2b.bn.running_var" in str(e.value)
  assert "Mixed_4c.b0.bn.bias (5,)" in str(e.value)
  with pytest.raises(EvalModelError, match="no such I3D file"):
    load_i3d(tmp_path / "absent.pt")
