"""Input pipelines: tensorflow-datasets builders read through tf.data (on the CPU; GPUs hidden from TF).

Training batches are a deterministic function of (seed, step): epoch e is a stateless shuffle of the
split seeded by (seed, e), batched with drop_remainder, so a run resumed at step s sees exactly the
batches an uninterrupted run sees from step s on.
"""

import dataclasses
import hashlib
import os
import socket
import urllib.parse
from typing import Iterator, Optional, Tuple

import numpy as np

DATASETS = ('binarized_mnist',)

# Static MNIST (Larochelle & Murray, 2011), as tfds' `binarized_mnist` builder registers it.
_BINARIZED_MNIST_URL = 'http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/'
_BINARIZED_MNIST_FILES = {
    'binarized_mnist_train.amat':
        (78400000, 'ad693b29f94c14277b095f5238ddefbbdaaae0939789dd2f4f0205278cee3e4d'),
    'binarized_mnist_valid.amat':
        (15680000, '1de3d397c40fe8eeb33dafd4099a1f665ec01e96d9be234aaeeac8a34930e2e2'),
    'binarized_mnist_test.amat':
        (15680000, 'e6687bfea3f820c174f33b7865140b2a2dd2930ef786f35d45795fc193b5ab2c'),
}
_LAYOUT = ('50,000 / 10,000 / 10,000 rows of 784 space-separated 0/1 values (28x28, row-major), '
           'the original .amat files of Larochelle & Murray (2011)')
SPLITS = ('train', 'validation', 'test')


class DataError(RuntimeError):
  """A dataset is missing, corrupt, or cannot be downloaded."""


def _tf():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  try:  # Keep TensorFlow off the accelerators: they belong to JAX.
    tf.config.set_visible_devices([], 'GPU')
  except RuntimeError:  # Already initialised; visible devices can no longer change.
    pass
  return tf


def hide_accelerators_from_tf():
  """Call before TensorFlow touches a GPU: TF must not grab the memory JAX uses."""
  _tf()


def _sha256(path: str) -> str:
  h = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 22), b''):
      h.update(block)
  return h.hexdigest()


def _download_instructions() -> str:
  files = '\n'.join(f'  {_BINARIZED_MNIST_URL}{name}' for name in _BINARIZED_MNIST_FILES)
  return (f'Download these files ({_LAYOUT}):\n{files}\ninto one folder and pass it as '
          '--config.data.manual_dir=FOLDER (or `make demo MANUAL_DIR=FOLDER`).')


def check_manual_dir(manual_dir: str):
  """Raises DataError naming the first missing or corrupt file of static MNIST in `manual_dir`."""
  if not os.path.isdir(manual_dir):
    raise DataError(f'data.manual_dir {manual_dir!r} is not a folder. {_download_instructions()}')
  for name, (size, sha256) in _BINARIZED_MNIST_FILES.items():
    path = os.path.join(manual_dir, name)
    if not os.path.isfile(path):
      raise DataError(f'Missing data file {path}. {_download_instructions()}')
    if os.path.getsize(path) != size or _sha256(path) != sha256:
      raise DataError(f'Corrupt data file {path}: expected {size} bytes with sha256 {sha256}, '
                      f'holding {_LAYOUT}. Download it again. {_download_instructions()}')


def validate(data_config):
  if data_config.dataset not in DATASETS:
    raise ValueError(f'Unknown data.dataset {data_config.dataset!r}; allowed: {", ".join(DATASETS)}.')


def _reachable(url: str, timeout: float = 5.0) -> bool:
  """Whether the host of `url` accepts a connection (tfds itself retries for minutes when offline)."""
  parsed = urllib.parse.urlparse(url)
  try:
    socket.create_connection((parsed.hostname, parsed.port or 80), timeout=timeout).close()
    return True
  except OSError:
    return False


def get_builder(data_config):
  """Returns the prepared tfds builder of `data_config.dataset`, preparing it if needed.

  With `data_config.manual_dir` the files are read from there (no network); otherwise tfds downloads
  them, and a failed download raises a DataError that says what to download and where to put it.
  """
  validate(data_config)
  _tf()
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = tfds.builder(data_config.dataset, data_dir=data_config.get('data_dir') or None)
  if builder.is_prepared():
    return builder
  manual_dir = data_config.get('manual_dir') or None
  if manual_dir:
    manual_dir = os.path.abspath(os.path.expanduser(manual_dir))
    check_manual_dir(manual_dir)
  if not manual_dir and not _reachable(_BINARIZED_MNIST_URL):
    raise DataError(f'{data_config.dataset} is not prepared in the tfds data_dir and '
                    f'{urllib.parse.urlparse(_BINARIZED_MNIST_URL).hostname} cannot be reached. '
                    f'{_download_instructions()}')
  try:
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
  except Exception as e:  # pylint: disable=broad-except
    if manual_dir:
      raise DataError(f'Preparing {data_config.dataset} from {manual_dir} failed: {e}') from e
    raise DataError(f'Could not download {data_config.dataset} (no network?): {e}\n'
                    f'{_download_instructions()}') from e
  return builder


def load_split(builder, split: str) -> np.ndarray:
  """A whole split as float32 [N, H, W, C] in [0, 1]."""
  if split not in SPLITS:
    raise ValueError(f'Unknown split {split!r}; allowed: {", ".join(SPLITS)}.')
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  ds = builder.as_dataset(split=split, shuffle_files=False).batch(8192)
  images = np.concatenate([b['image'] for b in tfds.as_numpy(ds)])
  if images.size and images.max() > 1:
    raise DataError(f'{builder.name}/{split} holds pixel values up to {images.max()}; '
                    f'expected binary images ({_LAYOUT}).')
  return images.astype(np.float32)


@dataclasses.dataclass
class Dataset:
  """The splits of one dataset, loaded in memory (small image datasets)."""
  name: str
  train: np.ndarray
  validation: np.ndarray
  test: np.ndarray

  @property
  def input_shape(self) -> Tuple[int, int, int]:
    return tuple(self.train.shape[1:])

  def split(self, name: str) -> np.ndarray:
    if name not in SPLITS:
      raise ValueError(f'Unknown split {name!r}; allowed: {", ".join(SPLITS)}.')
    return getattr(self, name)


def load(data_config) -> Dataset:
  builder = get_builder(data_config)
  return Dataset(data_config.dataset, *(load_split(builder, s) for s in SPLITS))


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
  if num_examples < batch_size:
    raise ValueError(f'train.batch_size {batch_size} is larger than the training split '
                     f'({num_examples} examples).')
  return num_examples // batch_size


def train_batches(images: np.ndarray, batch_size: int, seed: int, start_step: int = 0,
                  prefetch: int = 2) -> Iterator[np.ndarray]:
  """Endless float32 batches [batch_size, ...] of `images`, starting at global step `start_step`."""
  tf = _tf()
  n = images.shape[0]
  per_epoch = steps_per_epoch(n, batch_size)
  first_epoch, offset = divmod(start_step, per_epoch)
  images = tf.constant(images)

  def epoch_indices(epoch):
    perm = tf.random.experimental.stateless_shuffle(
        tf.range(n, dtype=tf.int64), seed=tf.stack([tf.constant(seed, tf.int64), epoch]))
    return tf.data.Dataset.from_tensor_slices(perm).batch(batch_size, drop_remainder=True)

  ds = tf.data.Dataset.range(first_epoch, np.iinfo(np.int64).max).flat_map(epoch_indices)
  ds = ds.skip(offset).map(lambda idx: tf.gather(images, idx),
                           num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return ds.prefetch(prefetch).as_numpy_iterator()


def eval_batches(images: np.ndarray, batch_size: int, max_examples: Optional[int] = None,
                 seed: int = 0) -> Tuple[np.ndarray, Iterator[Tuple[np.ndarray, np.ndarray]]]:
  """Fixed-size batches over a split, padded at the end: yields (batch, mask) with mask [batch_size].

  With `max_examples`, a random subset (seeded by `seed`) of that size, never the first rows: the test
  rows of static MNIST are ordered by difficulty. Returns (indices used, iterator).
  """
  n = images.shape[0]
  if max_examples is not None and max_examples > 0 and max_examples < n:
    indices = np.sort(np.random.default_rng(seed).choice(n, max_examples, replace=False))
  else:
    indices = np.arange(n)

  def gen():
    for start in range(0, len(indices), batch_size):
      idx = indices[start:start + batch_size]
      mask = np.zeros(batch_size, bool)
      mask[:len(idx)] = True
      idx = np.pad(idx, (0, batch_size - len(idx)), mode='edge')
      yield images[idx], mask

  return indices, gen()
