"""The one PyTorch <-> NNX rule table and reader, against torch's own layers and files."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from asva_jax import torch_weights as tw

torch = pytest.importorskip("torch")


class TorchNet(torch.nn.Module):
  """Linear, Conv1d, Conv2d, Conv3d and a norm: every rank the rule table names."""

  def __init__(self):
    super().__init__()
    self.fc = torch.nn.Linear(4, 5)
    self.conv1 = torch.nn.Conv1d(2, 3, 3)
    self.conv2 = torch.nn.Conv2d(2, 3, (3, 2))
    self.conv3 = torch.nn.Conv3d(2, 3, (2, 3, 2))
    self.norm = torch.nn.LayerNorm(5)


class Net(nnx.Module):
  def __init__(self, rngs: nnx.Rngs):
    self.fc = nnx.Linear(4, 5, rngs=rngs)
    self.conv1 = nnx.Conv(2, 3, (3,), padding="VALID", rngs=rngs)
    self.conv2 = nnx.Conv(2, 3, (3, 2), padding="VALID", rngs=rngs)
    self.conv3 = nnx.Conv(2, 3, (2, 3, 2), padding="VALID", rngs=rngs)
    self.norm = nnx.LayerNorm(5, rngs=rngs)


def _torch_state(net: torch.nn.Module) -> dict[str, np.ndarray]:
  return {k: v.detach().numpy() for k, v in net.state_dict().items()}


def test_layers_match_torch_and_round_trip(tmp_path):
  torch.manual_seed(0)
  ref = TorchNet()
  with torch.no_grad():
    ref.norm.weight.uniform_(0.5, 1.5)
  from safetensors.torch import save_file
  save_file(ref.state_dict(), str(tmp_path / "net.safetensors"))
  net = tw.load_into(nnx.eval_shape(lambda: Net(nnx.Rngs(1))),
                     tw.open_state_dict(tmp_path / "net.safetensors"), "net.safetensors")
  rng = np.random.default_rng(0)
  for name, shape in [("fc", (2, 4)), ("conv1", (2, 2, 7)), ("conv2", (2, 2, 6, 5)),
                      ("conv3", (2, 2, 4, 5, 4))]:
    x = rng.standard_normal(shape).astype(np.float32)
    want = getattr(ref, name)(torch.from_numpy(x)).detach().numpy()
    got = np.asarray(getattr(net, name)(jnp.asarray(np.moveaxis(x, 1, -1))))
    np.testing.assert_allclose(np.moveaxis(got, -1, 1), want, rtol=1e-5, atol=1e-5)
  x = rng.standard_normal((2, 5)).astype(np.float32)
  np.testing.assert_allclose(np.asarray(net.norm(jnp.asarray(x))),
                             ref.norm(torch.from_numpy(x)).detach().numpy(), rtol=1e-5, atol=1e-5)
  exported, want = tw.export_state_dict(net), _torch_state(ref)
  assert exported.keys() == want.keys()
  for key in want:
    assert np.array_equal(exported[key], want[key]), key
  assert tw.torch_shapes(net) == {k: v.shape for k, v in want.items()}


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_half_precision_files_read_as_float32(tmp_path, dtype, suffix):
  tensor = torch.linspace(-3, 3, 12).reshape(3, 4).to(getattr(torch, dtype))
  path = tmp_path / f"w{suffix}"
  if suffix == ".safetensors":
    from safetensors.torch import save_file
    save_file({"w": tensor, "b": torch.ones(2)}, str(path))
  else:
    torch.save({"state_dict": {"w": tensor, "b": torch.ones(2)}}, path)
  sd = tw.open_state_dict(path)
  assert sorted(sd) == ["b", "w"] and sd.shape("w") == (3, 4)
  assert sd["w"].dtype == np.float32
  assert np.array_equal(sd["w"], tensor.float().numpy())


def test_zero_dim_variables_keep_their_shape():
  class Scalar(nnx.Module):
    def __init__(self):
      self.logit_scale = nnx.Param(jnp.asarray(2.5))
  exported = tw.export_state_dict(Scalar())
  assert exported["logit_scale"].shape == ()


def test_mismatch_names_the_file_and_keys(tmp_path):
  torch.manual_seed(0)
  state = TorchNet().state_dict()
  del state["conv3.weight"]
  state["extra"] = torch.zeros(1)
  torch.save(state, tmp_path / "net.pth")
  with pytest.raises(tw.WeightFileError, match=r"(?s)net.pth: the tensors do not match the model.*"
                     r"1 missing: conv3.weight.*1 unexpected: extra"):
    tw.load_into(nnx.eval_shape(lambda: Net(nnx.Rngs(1))), tw.open_state_dict(tmp_path / "net.pth"),
                 str(tmp_path / "net.pth"))
  with pytest.raises(tw.WeightFileError, match=r"w.npz: unknown weights file type '.npz'"):
    (tmp_path / "w.npz").write_bytes(b"x")
    tw.open_state_dict(tmp_path / "w.npz", what="weights")
