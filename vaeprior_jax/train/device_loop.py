"""Training with the training split resident on the devices (`train.on_device=True`).

For small image datasets (MNIST-like: 50,000 x 784 bytes) the whole training split fits on every
accelerator. Then no input pipeline is needed: a chunk of steps runs as one compiled `lax.scan`, each
step gathering its batch on the device, shuffling with a per-epoch permutation and binarizing grey
levels anew (dynamic binarization) with keys derived from (seed, epoch) and (seed, step). Training
batches are thus a function of (seed, step), as in the tf.data pipeline (`data.train_batches`), so a
run resumed at any step repeats an uninterrupted one; the two modes draw different batches (their
random streams differ), each reproducibly.

The images are stored once per device in the narrowest exact form: 0/1 pixels and grey levels k/255
as uint8, anything else as float32; batches are converted on the device to exactly the float32 values
the host pipeline gives.
"""

import functools
from typing import Callable, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from vaeprior_jax import compiled
from vaeprior_jax import data
from vaeprior_jax import sharding

# Domain tags for the data keys: fold_in(key(seed), _DATA_TAG), then 0 (shuffles) or 1 (binarization).
_DATA_TAG = 0xDA7A


def encode_images(images: np.ndarray) -> Tuple[np.ndarray, Optional[np.ndarray]]:
  """(stored, table): uint8 `stored` and the float32 value of each byte, table[stored] == images, when
  that is exact (0/1 pixels, grey levels k/255, uint8 pixels); else (float32 images, None). The table
  holds numpy's float32 quotients: XLA's division on the device may differ from them in the last bit.
  """
  stored, divisor = data.as_uint8(images)
  if stored is None:
    return np.asarray(images, np.float32), None
  return stored, np.arange(256, dtype=np.float32) / np.float32(divisor)


class DeviceData:
  """A training split replicated on every device of `mesh`, and its batches as a function of the step.

  Args:
    images: [N, H, W, C] in [0, 1] (float32, or uint8 0..255).
    batch_size: the global batch size; an epoch is N // batch_size steps (the remainder is dropped).
    seed: the data seed (`config.seed`).
    binarize: draw each training batch's pixels as Bernoulli(grey level), anew for every step.
  """

  def __init__(self, images: np.ndarray, batch_size: int, seed: int, binarize: bool, mesh: Mesh):
    self.num_examples = int(images.shape[0])
    self.batch_size = int(batch_size)
    self.steps_per_epoch = data.steps_per_epoch(self.num_examples, self.batch_size)
    self.binarize = bool(binarize)
    stored, table = encode_images(images)
    self.images = sharding.replicate({'stored': stored, 'table': table}, mesh)
    self.mesh = mesh
    base = jax.random.fold_in(jax.random.key(seed), _DATA_TAG)
    self.keys = sharding.replicate({'shuffle': jax.random.fold_in(base, 0),
                                    'binarize': jax.random.fold_in(base, 1)}, mesh)

  def permutations(self, keys, first_epoch: jax.Array, num_epochs: int) -> jax.Array:
    """[num_epochs, N]: the example order of epochs first_epoch, first_epoch + 1, ..."""
    epochs = first_epoch + jnp.arange(num_epochs)
    return jax.vmap(lambda e: jax.random.permutation(jax.random.fold_in(keys['shuffle'], e),
                                                     self.num_examples))(epochs)

  def batch(self, images: jax.Array, keys, perms: jax.Array, first_epoch: jax.Array,
            step: jax.Array) -> jax.Array:
    """The float32 batch of global step `step`, given the permutations of epochs from first_epoch."""
    epoch, index = jnp.divmod(step, self.steps_per_epoch)
    rows = jax.lax.dynamic_slice_in_dim(perms[epoch - first_epoch], index * self.batch_size,
                                        self.batch_size)
    x = jnp.take(images['stored'], rows, axis=0)
    if images['table'] is not None:
      x = jnp.take(images['table'], x.astype(jnp.int32), axis=0)
    if self.binarize:
      noise = jax.random.uniform(jax.random.fold_in(keys['binarize'], step), x.shape)
      x = (noise < x).astype(jnp.float32)
    return x

  def batch_at(self, step: int) -> np.ndarray:
    """The batch of `step` on the host (the same values the compiled loop trains on)."""
    if not hasattr(self, '_batch_at'):
      self._batch_at = jax.jit(lambda images, keys, s: self.batch(
          images, keys, self.permutations(keys, s // self.steps_per_epoch, 1),
          s // self.steps_per_epoch, s))
    return np.asarray(jax.device_get(self._batch_at(self.images, self.keys,
                                                    jnp.asarray(step, jnp.int32))))


StepFn = Callable[[Dict, jax.Array, jax.Array], Tuple[Dict, Dict[str, jax.Array]]]


def scan_fn(step_fn: StepFn, device_data: DeviceData):
  """The loop as a plain function: (state, images, keys, train_key, length) -> (state, metrics).

  `length` steps of step_fn from state['step'] as one `lax.scan` over batches drawn on the device
  from device_data's images and keys. `make_loop` compiles it; `jax.export` can lower it for another
  platform (tests/train/lowering_test.py).
  """
  batch_sharding = sharding.batch_sharded(device_data.mesh)
  per_epoch = device_data.steps_per_epoch

  def run(state, images, keys, train_key, length):
    first_epoch = state['step'] // per_epoch
    # The chunk's steps lie in at most length // per_epoch + 2 consecutive epochs.
    perms = device_data.permutations(keys, first_epoch, length // per_epoch + 2)

    def body(state, _):
      x = device_data.batch(images, keys, perms, first_epoch, state['step'])
      x = jax.lax.with_sharding_constraint(x, batch_sharding)
      return step_fn(state, x, train_key)

    return jax.lax.scan(body, state, None, length=length)

  return run


def make_loop(step_fn: StepFn, device_data: DeviceData):
  """Returns run(state, train_key, length) -> (state, metrics with a leading axis [length]).

  `length` consecutive steps from state['step'] run as one compiled `lax.scan` of step_fn over
  on-device batches; each distinct length compiles once. The state is donated.
  """
  mesh = device_data.mesh
  repl = sharding.replicated(mesh)
  run = scan_fn(step_fn, device_data)

  by_length = {}

  def run_steps(state, train_key, length: int):
    if length not in by_length:
      by_length[length] = compiled.jit(functools.partial(run, length=length),
                                       compiled.mesh_platform(mesh),
                                       in_shardings=(repl, repl, repl, repl),
                                       out_shardings=(repl, repl), donate_argnums=(0,))
    return by_length[length](state, device_data.images, device_data.keys, train_key)

  return run_steps
