"""The 1-D ('data',) device mesh: parameters replicated, batches sharded along their first axis."""

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


def make_mesh(devices=None) -> Mesh:
  """A mesh over `devices` (default: all devices of all processes) with one axis, 'data'."""
  return Mesh(np.asarray(devices if devices is not None else jax.devices()), ('data',))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P('data'))


def shard_batch(batch: np.ndarray, mesh: Mesh) -> jax.Array:
  """A host batch (this process's share) -> a global array sharded along 'data'."""
  return jax.make_array_from_process_local_data(batch_sharded(mesh), batch)


def round_up_to_devices(batch_size: int, mesh: Mesh) -> int:
  """The smallest multiple of the mesh's device count that is >= batch_size (for sharded eval)."""
  n = mesh.devices.size
  return -(-batch_size // n) * n
