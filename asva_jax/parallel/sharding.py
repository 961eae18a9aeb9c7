"""The device mesh (data, fsdp) and where every array lives on it (training, sampling, evaluation).

Training: one rule, in one place, from each array's shape: a tensor of at least
`min_shard_size` elements is split over `fsdp` along its largest dimension that
`fsdp` divides (ZeRO-style for the trainable parameters and their optimizer state,
optionally for the frozen base); everything else is replicated. The batch is split
over both axes along its leading dimension.

Sampling and evaluation: `data_mesh` (this host's devices along `data`), the batch split over it
and the weights replicated (`replicate`); a batch is padded to a multiple of the devices
(`padded_size`).
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from asva_jax.errors import ConfigError

DATA, FSDP = "data", "fsdp"
BATCH_AXES = (DATA, FSDP)


def make_mesh(mesh_config, devices=None) -> Mesh:
  devices = list(jax.devices() if devices is None else devices)
  fsdp = int(mesh_config.fsdp)
  data = int(mesh_config.data)
  if data == -1:
    data = len(devices) // max(fsdp, 1)
  if fsdp < 1 or data < 1 or data * fsdp != len(devices):
    raise ConfigError(f"--config.mesh.data={mesh_config.data} --config.mesh.fsdp={mesh_config.fsdp}: "
                      f"the mesh must use all {len(devices)} devices (data x fsdp = {len(devices)})")
  return Mesh(np.asarray(devices, dtype=object).reshape(data, fsdp), BATCH_AXES)


def data_mesh(devices=None) -> Mesh:
  """This process's devices (or `devices`) along `data`: each host runs its own share of the clips,
  so no computation spans hosts."""
  devices = list(jax.local_devices() if devices is None else devices)
  return Mesh(np.asarray(devices, dtype=object).reshape(len(devices), 1), BATCH_AXES)


def padded_size(n: int, mesh: Mesh) -> int:
  """The smallest multiple of the mesh's devices that holds `n` (every device gets as many rows)."""
  return -(-n // mesh.size) * mesh.size


def replicate(module, mesh: Mesh) -> None:
  """Puts a whole copy of an NNX module's state on every device of `mesh`, in place (the old
  buffers are freed rather than doubled)."""
  from flax import nnx
  nnx.update(module, jax.device_put(nnx.state(module), replicated(mesh)))


def on_batch(x, mesh: Mesh):
  """An array (numpy, jax, or keys) split over the mesh along its leading dimension."""
  return jax.device_put(x, batch_sharding(mesh, np.ndim(x)))


def param_spec(shape: tuple[int, ...], fsdp: int, min_size: int) -> P:
  if fsdp <= 1 or int(np.prod(shape, dtype=np.int64)) < min_size:
    return P()
  for dim in sorted(range(len(shape)), key=lambda d: -shape[d]):
    if shape[dim] % fsdp == 0:
      spec = [None] * len(shape)
      spec[dim] = FSDP
      return P(*spec)
  return P()


def tree_shardings(tree, mesh: Mesh, *, shard: bool, min_size: int):
  """NamedShardings for every array leaf of `tree` (arrays or ShapeDtypeStructs)."""
  fsdp = mesh.shape[FSDP] if shard else 1
  return jax.tree.map(lambda x: NamedSharding(mesh, param_spec(tuple(x.shape), fsdp, min_size)), tree)


def batch_sharding(mesh: Mesh, ndim: int) -> NamedSharding:
  return NamedSharding(mesh, P(BATCH_AXES, *([None] * (ndim - 1))))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def global_batch(local: dict, mesh: Mesh) -> dict:
  """This host's part of the batch (numpy) -> global arrays split over (data, fsdp)."""
  return {k: jax.make_array_from_process_local_data(batch_sharding(mesh, v.ndim), v)
          for k, v in local.items()}
