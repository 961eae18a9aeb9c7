"""FID InceptionV3: parity with the original wrapper's blocks, the weight-file format, loader errors."""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from safetensors.numpy import load_file, save_file

from asva_jax.eval.errors import EvalModelError
from asva_jax.eval.inception import FIDInceptionV3, load_inception
from asva_jax.torch_weights import export_state_dict, torch_shapes

DATA = Path(__file__).parent / "data" / "eval" / "inception_fid"
WEIGHTS = DATA / "pt_inception_format.safetensors"
RTOL = 1e-4


def rel_err(actual, expected):
  return np.abs(np.asarray(actual, np.float64) - expected).max() / np.abs(expected).max()


@pytest.fixture(scope="module")
def model():
  return load_inception(WEIGHTS)


@pytest.fixture(scope="module")
def io():
  return dict(np.load(DATA / "io.npz"))


def test_blocks_and_features_match_original(model, io):
  x = io["x"].transpose(0, 2, 3, 1)
  blocks = nnx.jit(lambda m, x: m.blocks(x))(model, x)
  for name, actual in zip(("block0", "block1", "block2"), blocks[:3]):
    actual = np.asarray(actual).transpose(0, 3, 1, 2)
    assert actual.shape == io[name].shape, name
    assert rel_err(actual, io[name]) < RTOL, name
  assert blocks[3].shape == io["features"].shape
  assert rel_err(blocks[3], io["features"]) < RTOL


def test_widths_read_from_file(model, io):
  dims = json.loads((DATA / "dims.json").read_text())
  assert model.feature_dim == dims["feature_dim"] == io["features"].shape[1]
  assert model.fc.kernel.shape == tuple(dims["fc"][::-1])


def test_round_trip_to_pytorch_names(model):
  """Our variables, exported, are the file's tensors (num_batches_tracked aside)."""
  original = {k: v for k, v in load_file(str(WEIGHTS)).items() if not k.endswith("num_batches_tracked")}
  exported = export_state_dict(model, kind=nnx.Variable)
  assert set(exported) == set(original)
  for key, value in original.items():
    np.testing.assert_array_equal(exported[key], value, err_msg=key)


def test_pth_file_gives_the_same_network(model, tmp_path):
  torch.save({k: torch.from_numpy(v) for k, v in load_file(str(WEIGHTS)).items()}, tmp_path / "pt_inception.pth")
  other = export_state_dict(load_inception(tmp_path / "pt_inception.pth"), kind=nnx.Variable)
  for key, value in export_state_dict(model, kind=nnx.Variable).items():
    np.testing.assert_array_equal(other[key], value, err_msg=key)


def test_full_size_keys():
  """Built at the real size (abstract, no weights), the network has exactly the real file's tensors."""
  full = {k: tuple(v) for k, v in json.loads((DATA / "full_size_keys.json").read_text()).items()}
  counters = {k for k in full if k.endswith("num_batches_tracked")}
  assert all(full[k] == () for k in counters)
  model = nnx.eval_shape(lambda: FIDInceptionV3())
  assert torch_shapes(model, kind=nnx.Variable) == {k: s for k, s in full.items() if k not in counters}
  assert model.feature_dim == 2048
  blocks = nnx.eval_shape(lambda m, x: m.blocks(x), model, jax.ShapeDtypeStruct((2, 229, 229, 3), jnp.float32))
  # 229-px input: 55 after the first max pool, 26 after the second, 12 after Mixed_6e (5 at Mixed_7c).
  assert [b.shape for b in blocks] == [(2, 55, 55, 64), (2, 26, 26, 192), (2, 12, 12, 768), (2, 2048)]


def test_mismatched_file_names_the_keys(tmp_path):
  state = load_file(str(WEIGHTS))
  del state["Mixed_6e.branch_pool.bn.bias"]
  state["Mixed_5b.branch1x1.bn.running_var"] = np.ones(3, np.float32)
  state["extra.weight"] = np.zeros(2, np.float32)
  bad = tmp_path / "bad.safetensors"
  save_file(state, str(bad))
  with pytest.raises(EvalModelError) as e:
    load_inception(bad)
  message = str(e.value)
  for text in (str(bad), "1 missing: Mixed_6e.branch_pool.bn.bias", "1 unexpected: extra.weight",
               "Mixed_5b.branch1x1.bn.running_var (3,)"):
    assert text in message, message


def test_unreadable_files(tmp_path):
  with pytest.raises(EvalModelError, match="no such FID Inception file"):
    load_inception(tmp_path / "missing.pth")
  (tmp_path / "junk.safetensors").write_bytes(b"not safetensors")
  with pytest.raises(EvalModelError, match="unreadable safetensors"):
    load_inception(tmp_path / "junk.safetensors")
  scripted = torch.jit.script(torch.nn.Linear(2, 2))
  torch.jit.save(scripted, str(tmp_path / "scripted.pt"))
  with pytest.raises(EvalModelError, match="TorchScript"):
    load_inception(tmp_path / "scripted.pt")
  torch.save({"w": [1, 2]}, tmp_path / "no_tensors.pth")
  with pytest.raises(EvalModelError, match="scripted|state dict|tensors"):
    load_inception(tmp_path / "no_tensors.pth")
