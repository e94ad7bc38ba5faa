"""Shared test helpers: small configs and mock data that never touches the network."""

import contextlib
import os
from unittest import mock

import tensorflow_datasets as tfds

from experiments.configs import xu2019
from vaeprior_jax import data
from vaeprior_jax import methods

# The repository's root folder.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(__file__), '..', '..', 'shared', 'data')
SHARED_MNIST = os.path.join(SHARED_DATA, 'binarized_mnist')


@contextlib.contextmanager
def mock_tfds(num_examples: int = 64, max_value=None):
  """tfds' mock data (random pixels up to max_value), with the network probe stubbed out."""
  with tfds.testing.mock_data(num_examples=num_examples, max_value=max_value), \
       mock.patch.object(data, '_reachable', lambda url, timeout=5.0: True):
    yield


def mock_binarized_mnist(num_examples: int = 64):
  """Mock binarized_mnist: random binary pixels."""
  return mock_tfds(num_examples, max_value=2)  # Pixels drawn from {0, 1} (max_value is exclusive).


def latest_params(workdir, input_shape=(28, 28, 1)):
  """(parameters of the latest checkpoint of a training workdir, fetched to the host; its step)."""
  import jax  # pylint: disable=g-import-not-at-top
  from vaeprior_jax import checkpoints  # pylint: disable=g-import-not-at-top
  _, params, step = checkpoints.restore_run(workdir, input_shape, 'latest')
  return jax.device_get(params), step


def subprocess_environment(devices: int) -> dict:
  """This process's environment for a JAX process the test starts (a binary, a notebook's kernel):
  CPU only, with `devices` simulated devices instead of the suite's 4."""
  return dict(os.environ, XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}',
              JAX_PLATFORMS='cpu', CUDA_VISIBLE_DEVICES='', TF_CPP_MIN_LOG_LEVEL='2')


def checkpoint_steps(workdir):
  """The steps of the finished checkpoints in a training workdir, ascending, from the folder names
  under checkpoints/ (a save in progress is in a temporary folder whose name is not a number), so
  that a test can poll a workdir another process is writing."""
  path = os.path.join(workdir, 'checkpoints')
  return sorted(int(d) for d in os.listdir(path) if d.isdigit()) if os.path.isdir(path) else []


def wait_for_checkpoint(workdir, proc, after: int = 0, timeout: float = 240):
  """Polls until `workdir` holds a finished checkpoint of a step after `after`, the process `proc`
  ends or `timeout` seconds pass (the caller's assertions then say which)."""
  import time  # pylint: disable=g-import-not-at-top
  deadline = time.time() + timeout
  while time.time() < deadline and proc.poll() is None:
    steps = checkpoint_steps(workdir)
    if steps and steps[-1] > after:
      return
    time.sleep(0.01)


def copy_until(workdir, copy, step):
  """Copies a training workdir to `copy` without its checkpoints after `step` (a run that stopped
  there), to resume it."""
  import shutil  # pylint: disable=g-import-not-at-top
  from vaeprior_jax import checkpoints  # pylint: disable=g-import-not-at-top
  shutil.copytree(workdir, copy)
  manager = checkpoints.checkpoint_manager(copy)
  for s in manager.all_steps():
    if s > step:
      manager.delete(s)
  manager.close()


def tiny_config(**model):
  config = xu2019.get_config('runlocal')
  for k, v in model.items():
    config.model[k] = v
  return config


def plain_and_on_device_steps(config, images, batch_size: int, chunks):
  """The same training run twice on a mesh of all devices, from the same initial state: plain
  compiled steps, and the on-device loop (`device_loop.make_loop`) called with `chunks` steps at a
  time. Returns ((plain state, plain losses), (loop state, loop losses)), fetched to the host."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from vaeprior_jax.train import device_loop  # pylint: disable=g-import-not-at-top
  from vaeprior_jax import models  # pylint: disable=g-import-not-at-top
  from vaeprior_jax import sharding  # pylint: disable=g-import-not-at-top
  from vaeprior_jax.train import trainer  # pylint: disable=g-import-not-at-top
  model = models.create(config.model, images.shape[1:])
  mesh = sharding.make_mesh()
  dd = device_loop.DeviceData(images, batch_size, seed=0, binarize=True, mesh=mesh)
  optimizer = methods.joint.make_optimizer(config.train, dd.steps_per_epoch)
  step_fn = trainer.make_train_step(model, optimizer, config.train, dd.steps_per_epoch)
  init = jax.jit(lambda b: trainer.create_train_state(model, optimizer, b, jax.random.key(0)),
                 out_shardings=sharding.replicated(mesh))
  key = sharding.replicate(jax.random.key(1), mesh)
  plain_state, plain_step, plain_losses = init(dd.batch_at(0)), trainer.compile_train_step(
      step_fn, mesh), []
  for s in range(sum(chunks)):
    plain_state, m = plain_step(plain_state, sharding.shard_batch(dd.batch_at(s), mesh), key)
    plain_losses.append(float(m['loss']))
  loop = device_loop.make_loop(step_fn, dd)
  state, losses = init(dd.batch_at(0)), []
  for n in chunks:
    state, m = loop(state, key, n)
    losses.append(np.asarray(m['loss']))
  return ((jax.device_get(plain_state), np.asarray(plain_losses)),
          (jax.device_get(state), np.concatenate(losses)))


def random_inception_weights(folder: str, seed: int = 0) -> str:
  """A stand-in for pytorch-fid's weights file without torch: a file of random bytes, and beside it
  the converted-parameters cache `fid.load_params` reads instead of converting the file again,
  holding random Inception parameters (He-scaled kernels, batch norms near the identity, so the
  features vary between images). Returns the file's path; `fid.load_params` accepts it once
  `fid.FID_WEIGHTS_SHA256_PREFIX` is patched to its digest's first 8 hex digits."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from vaeprior_jax import checkpoints  # pylint: disable=g-import-not-at-top
  from vaeprior_jax.evaluation.sample_quality import fid  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  template = jax.eval_shape(fid.InceptionV3().init, jax.random.key(0),
                            jax.ShapeDtypeStruct((1, 299, 299, 3), jnp.float32))['params']

  def fill(path, leaf):
    name, shape = path[-1].key, leaf.shape
    if name == 'kernel':
      return rng.normal(0.0, np.sqrt(2.0 / np.prod(shape[:-1])), shape).astype(np.float32)
    if name in ('scale', 'var'):
      return rng.uniform(0.5, 1.5, shape).astype(np.float32)
    return rng.normal(0.0, 0.1, shape).astype(np.float32)  # 'bias', 'mean'

  params = jax.tree_util.tree_map_with_path(fill, template)
  path = os.path.join(folder, 'random_inception.pth')
  with open(path, 'wb') as f:
    f.write(rng.bytes(256))
  digest = data.file_sha256(path)
  checkpoints.save_tree_npz(fid._cache_path(path, digest), params)  # pylint: disable=protected-access
  return path


def count_kept_parts(monkeypatch, suffix: str):
  """Counts the parts `estimators.kept_concatenation` computes for a partial file ending in
  `suffix` (other passes run as they are), and requests a SIGTERM after the n-th for each n put in
  `stop_at`. Returns (parts, stop_at): a list that grows by one per part, and that list of n."""
  from vaeprior_jax import interrupts  # pylint: disable=g-import-not-at-top
  from vaeprior_jax.evaluation import estimators  # pylint: disable=g-import-not-at-top
  original, parts, stop_at = estimators.kept_concatenation, [], []

  def kept_concatenation(parts_from, partial_file=None, *args, **kwargs):
    if not (partial_file or '').endswith(suffix):
      return original(parts_from, partial_file, *args, **kwargs)

    def counted(start):
      for part in parts_from(start):
        parts.append(1)
        if len(parts) in stop_at:
          interrupts.request('SIGTERM')
        yield part

    return original(counted, partial_file, *args, **kwargs)

  monkeypatch.setattr(estimators, 'kept_concatenation', kept_concatenation)
  return parts, stop_at
