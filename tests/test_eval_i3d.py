"""I3D: parity with the original InceptionI3d, file formats (state dicts and TorchScript), errors."""

import json
from pathlib import Path
from typing import List

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from safetensors.numpy import load_file, save_file

from asva_jax.commands import verify_i3d
from asva_jax.eval.errors import EvalModelError
from asva_jax.eval.i3d import (InceptionI3d, _torchscript_eps, features_and_logits, load_i3d, same_pads,
                               torchscript_names)
from asva_jax.torch_weights import export_state_dict, torch_shapes

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


def fixture_input(io):
  """The factorised 224 x 224 input, (B, 3, T, 224, 224) as the original takes it."""
  return np.repeat(np.repeat(io["x_coarse"], 8, -2), 8, -1) + np.tile(io["x_tile"], (1, 1, 1, 28, 28))


def test_features_and_logits_match_original(model, io):
  features, logits = features_and_logits(model, fixture_input(io).transpose(0, 2, 3, 4, 1))
  assert rel_err(np.asarray(features).transpose(0, 4, 1, 2, 3), io["avgpool_features"]) < RTOL
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
  assert torch_shapes(model, kind=nnx.Variable) == {k: s for k, s in full.items() if k not in counters}
  assert model.feature_dim == 1024
  clips = jax.ShapeDtypeStruct((2, 12, 224, 224, 3), jnp.float32)
  assert nnx.eval_shape(lambda m, x: m.features(x), model, clips).shape == (2, 1, 1, 1, 1024)
  assert nnx.eval_shape(lambda m, x: m(x), model, clips).shape == (2, 400)


def test_round_trip_and_prefixed_pth(model, tmp_path):
  original = load_file(str(WEIGHTS))
  exported = export_state_dict(model, kind=nnx.Variable)
  assert set(exported) == {k for k in original if not k.endswith("num_batches_tracked")}
  for key, value in exported.items():
    np.testing.assert_array_equal(value, original[key], err_msg=key)
  torch.save({"state_dict": {f"module.{k}": torch.from_numpy(v) for k, v in original.items()}},
             tmp_path / "i3d.pth")
  again = export_state_dict(load_i3d(tmp_path / "i3d.pth"), kind=nnx.Variable)
  for key, value in exported.items():
    np.testing.assert_array_equal(again[key], value, err_msg=key)


def _same_pad(x, kernel: List[int], stride: List[int]):
  pads: List[int] = []
  for axis in range(3):  # F.pad takes the last axis first
    n, k, st = x.shape[4 - axis], kernel[2 - axis], stride[2 - axis]
    total = max(k - st, 0) if n % st == 0 else max(k - n % st, 0)
    pads.append(total // 2)
    pads.append(total - total // 2)
  return torch.nn.functional.pad(x, pads)


class _Unit(torch.nn.Module):
  """A reference Unit3D named like another port (`conv3d` + `batch3d`; the logits: a biased conv)."""

  def __init__(self, state, prefix: str, eps: float, stride=(1, 1, 1)):
    super().__init__()
    w = torch.from_numpy(state[f"{prefix}.conv3d.weight"])
    self.kernel, self.stride, self.is_logits = list(w.shape[2:]), list(stride), prefix == "logits"
    self.conv3d = torch.nn.Conv3d(w.shape[1], w.shape[0], tuple(w.shape[2:]), stride, bias=self.is_logits)
    self.conv3d.weight.data.copy_(w)
    self.batch3d = torch.nn.BatchNorm3d(w.shape[0], eps=eps) if not self.is_logits else torch.nn.Identity()
    if self.is_logits:
      self.conv3d.bias.data.copy_(torch.from_numpy(state["logits.conv3d.bias"]))
    else:
      for leaf in ("weight", "bias", "running_mean", "running_var"):
        getattr(self.batch3d, leaf).data.copy_(torch.from_numpy(state[f"{prefix}.bn.{leaf}"]))

  def forward(self, x):
    x = self.batch3d(self.conv3d(_same_pad(x, self.kernel, self.stride)))
    return x if self.is_logits else torch.relu(x)


class _Pool(torch.nn.Module):
  def __init__(self, kernel, stride):
    super().__init__()
    self.kernel, self.stride = list(kernel), list(stride)

  def forward(self, x):
    return torch.nn.functional.max_pool3d(_same_pad(x, self.kernel, self.stride), self.kernel, self.stride)


class _Mixed(torch.nn.Module):
  def __init__(self, state, name: str, eps: float):
    super().__init__()
    self.branch_0 = _Unit(state, f"{name}.b0", eps)
    self.branch_1 = torch.nn.Sequential(_Unit(state, f"{name}.b1a", eps), _Unit(state, f"{name}.b1b", eps))
    self.branch_2 = torch.nn.Sequential(_Unit(state, f"{name}.b2a", eps), _Unit(state, f"{name}.b2b", eps))
    self.branch_3 = torch.nn.Sequential(_Pool((3, 3, 3), (1, 1, 1)), _Unit(state, f"{name}.b3b", eps))

  def forward(self, x):
    return torch.cat([self.branch_0(x), self.branch_1(x), self.branch_2(x), self.branch_3(x)], 1)


class _OtherPortI3D(torch.nn.Module):
  """An independent PyTorch I3D holding the fixture's weights under another port's names, logits
  last, called like the StyleGAN-V detector: a stand-in for `i3d_torchscript.pt`."""

  def __init__(self, state, eps: float = 1e-5):
    super().__init__()
    self.conv3d_1a_7x7 = _Unit(state, "Conv3d_1a_7x7", eps, (2, 2, 2))
    self.maxpool_2a = _Pool((1, 3, 3), (1, 2, 2))
    self.conv3d_2b_1x1 = _Unit(state, "Conv3d_2b_1x1", eps)
    self.conv3d_2c_3x3 = _Unit(state, "Conv3d_2c_3x3", eps)
    self.maxpool_3a = _Pool((1, 3, 3), (1, 2, 2))
    self.mixed_3 = torch.nn.Sequential(_Mixed(state, "Mixed_3b", eps), _Mixed(state, "Mixed_3c", eps))
    self.maxpool_4a = _Pool((3, 3, 3), (2, 2, 2))
    self.mixed_4 = torch.nn.Sequential(*[_Mixed(state, f"Mixed_4{c}", eps) for c in "bcdef"])
    self.maxpool_5a = _Pool((2, 2, 2), (2, 2, 2))
    self.mixed_5 = torch.nn.Sequential(_Mixed(state, "Mixed_5b", eps), _Mixed(state, "Mixed_5c", eps))
    self.conv3d_0c_1x1 = _Unit(state, "logits", eps)

  def forward(self, x, rescale: bool = False, resize: bool = False, return_features: bool = False):
    x = self.maxpool_3a(self.conv3d_2c_3x3(self.conv3d_2b_1x1(self.maxpool_2a(self.conv3d_1a_7x7(x)))))
    x = self.mixed_5(self.maxpool_5a(self.mixed_4(self.maxpool_4a(self.mixed_3(x)))))
    x = self.conv3d_0c_1x1(torch.nn.functional.avg_pool3d(x, [2, 7, 7], [1, 1, 1]))
    return x.squeeze(3).squeeze(3).mean(2)


@pytest.fixture(scope="module")
def torchscript_file(tmp_path_factory):
  path = tmp_path_factory.mktemp("detector") / "i3d_torchscript.pt"
  torch.jit.save(torch.jit.script(_OtherPortI3D(load_file(str(WEIGHTS))).eval()), str(path))
  return path


def test_torchscript_detector_loads_and_agrees(model, torchscript_file, io):
  """Names matched by structure (logits last in this file); the stand-in detector reproduces the
  original's logits, and ours, loaded from it, reproduce the detector's."""
  loaded = load_i3d(torchscript_file)
  ours, theirs = export_state_dict(model, kind=nnx.Variable), export_state_dict(loaded, kind=nnx.Variable)
  assert set(theirs) == set(ours)
  for key, value in theirs.items():
    np.testing.assert_array_equal(value, ours[key], err_msg=key)
  jax_logits, detector_logits = verify_i3d.detector_outputs(torchscript_file, fixture_input(io))
  assert rel_err(detector_logits, io["logits"]) < RTOL
  assert rel_err(jax_logits, detector_logits) < RTOL


def test_torchscript_batchnorm_eps_is_read():
  scripted = torch.jit.script(torch.nn.Sequential(torch.nn.BatchNorm3d(2, eps=1e-3)))
  assert _torchscript_eps(scripted) == 1e-3
  assert _torchscript_eps(torch.jit.script(torch.nn.Sequential(torch.nn.ReLU()))) == 1e-5


def test_torchscript_of_another_structure_is_refused(torchscript_file):
  state = torch.jit.load(str(torchscript_file)).state_dict()
  state = {k: v.numpy() for k, v in state.items() if not k.startswith("mixed_5.1.")}
  with pytest.raises(EvalModelError, match="cannot match this TorchScript I3D.*conv3d_1a_7x7"):
    torchscript_names(state, "detector.pt")


def test_verify_command_needs_a_detector(capsys):
  with pytest.raises(SystemExit) as e:
    verify_i3d.run(["verify_i3d"])
  assert e.value.code == 2
  assert "--detector" in capsys.readouterr().err


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
