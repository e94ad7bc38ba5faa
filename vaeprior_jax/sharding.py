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


def replicate(tree, mesh: Mesh):
  """Host values (arrays, typed keys) -> arrays replicated over the mesh, in one or many processes
  (every process passes the same values)."""
  target = replicated(mesh)

  def put(x):
    if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      raw = np.asarray(jax.random.key_data(x))
      return jax.random.wrap_key_data(
          jax.make_array_from_callback(raw.shape, target, lambda index: raw[index]),
          impl=jax.random.key_impl(x))
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, target, lambda index: x[index])

  return jax.tree.map(put, tree)


def shard_batch(batch: np.ndarray, mesh: Mesh) -> jax.Array:
  """This process's rows of a global batch (see `process_slice`) -> the global array, sharded along
  'data' over the devices of all processes."""
  return jax.make_array_from_process_local_data(batch_sharded(mesh), batch)


def process_slice(batch_size: int) -> slice:
  """The rows of a global batch that this process reads (and feeds to its local devices)."""
  count, index = jax.process_count(), jax.process_index()
  if batch_size % count:
    raise ValueError(f'A batch of {batch_size} cannot be split over {count} processes.')
  per = batch_size // count
  return slice(index * per, (index + 1) * per)


def to_host(tree):
  """Fetches a pytree of arrays to NumPy on every process: replicated arrays from a local copy, others
  (sharded over several processes) gathered. In one process: jax.device_get."""
  if jax.process_count() == 1:
    return jax.device_get(tree)
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top

  def fetch(x):
    if not isinstance(x, jax.Array) or x.is_fully_addressable:
      return np.asarray(jax.device_get(x))
    if x.sharding.is_fully_replicated:
      return np.asarray(x.addressable_data(0))
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))

  return jax.tree.map(fetch, tree)


def initialize_distributed(coordinator_address=None, num_processes=None, process_id=None):
  """jax.distributed.initialize() for runs over several hosts (arguments None: detected from the
  cluster environment); CPU processes exchange data through gloo."""
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(coordinator_address, num_processes, process_id)


def round_up_to_devices(batch_size: int, mesh: Mesh) -> int:
  """The smallest multiple of the mesh's device count that is >= batch_size (for sharded eval)."""
  n = mesh.devices.size
  return -(-batch_size // n) * n
