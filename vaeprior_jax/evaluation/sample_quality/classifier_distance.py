"""The classifier Fréchet distance (CFD): an offline stand-in for FID on labelled grey-level datasets.

FID needs Inception weights these machines cannot download. The CFD is the same Fréchet distance
(`frechet`) between two sets of images, in the feature space of a small convolutional classifier
the library trains on the dataset's own labels instead of Inception's: Conv 32 3x3 -> ReLU -> max
pool 2 -> Conv 64 3x3 -> ReLU -> max pool 2 -> Dense 128 -> ReLU (the 128-d features) -> Dense
[classes]. It is **not FID**: its numbers are not comparable with any paper's, only with each other
under one classifier. Compare runs with the same classifier folder (`classifier_dir`): the
classifier is trained once (seeded; Adam 1e-3, batch 128, `steps` steps on the tfds 'train' split,
test accuracy recorded) and kept as `classifier.npz` + `classifier.json` there.
"""

import functools
import json
import os
import time
from typing import Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from vaeprior_jax import interrupts
from vaeprior_jax.evaluation.sample_quality import frechet

Array = jax.Array
NAME = 'classifier Fréchet distance (CFD; not FID)'
# Datasets with labels this library reads: name -> number of classes.
LABELLED = {'mnist': 10, 'fashion_mnist': 10, 'cifar10': 10}


class Classifier(nn.Module):
  """images [N, H, W, C] in [0, 1] -> (logits [N, classes], features [N, 128])."""
  num_classes: int = 10

  @nn.compact
  def __call__(self, x: Array) -> Tuple[Array, Array]:
    h = nn.max_pool(nn.relu(nn.Conv(32, (3, 3), name='conv_0')(x)), (2, 2), (2, 2))
    h = nn.max_pool(nn.relu(nn.Conv(64, (3, 3), name='conv_1')(h)), (2, 2), (2, 2))
    features = nn.relu(nn.Dense(128, name='features')(h.reshape((h.shape[0], -1))))
    return nn.Dense(self.num_classes, name='logits')(features), features


def num_classes(data_config) -> int:
  """The number of classes of `data_config`'s labels (0: none here): LABELLED's, or for your own
  arrays 1 + the largest of y_train and y_test (images of at least 4x4 only: the classifier pools
  twice)."""
  from vaeprior_jax import data  # pylint: disable=g-import-not-at-top
  if data_config.dataset in LABELLED:
    return LABELLED[data_config.dataset]
  if data_config.dataset != 'arrays':
    return 0
  contents = data.array_contents(data_config)
  if not {'train', 'test'} <= set(contents.labels) or min(contents.shape[:2]) < 4:
    return 0
  return int(max(contents.labels['train'].max(), contents.labels['test'].max())) + 1


def _needs_labels(data_config) -> int:
  n = num_classes(data_config)
  if not n:
    raise ValueError(f'The {NAME} needs labels; data.dataset={data_config.dataset!r} has none here '
                     f'(allowed: {", ".join(LABELLED)}, or arrays with y_train and y_test and images '
                     'of at least 4x4).')
  return n


def load_labelled(data_config, split: str) -> Tuple[np.ndarray, np.ndarray]:
  """(images [N, H, W, C] float32 in [0, 1], labels [N] int32) of a whole split ('train' is the full
  training split, before the validation carve-out): a tfds split prepared offline like
  `data.load`, or your own arrays' x and y."""
  from vaeprior_jax import data  # pylint: disable=g-import-not-at-top
  _needs_labels(data_config)
  if data_config.dataset == 'arrays':
    contents = data.array_contents(data_config)
    if split not in contents.labels or contents.splits[split] is None:
      raise ValueError(f'data.path {data_config.path!r} has no labels of its {split} split '
                       f'(y_{split}).')
    return contents.splits[split], contents.labels[split]
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = data.get_builder(data_config)
  ds = builder.as_dataset(split=split, shuffle_files=False).batch(8192)
  images, labels = [], []
  for batch in tfds.as_numpy(ds):
    images.append(batch['image'])
    labels.append(batch['label'])
  return (np.concatenate(images).astype(np.float32) / 255.0,
          np.concatenate(labels).astype(np.int32))


def train(images: np.ndarray, labels: np.ndarray, num_classes: int, steps: int = 2000,
          batch_size: int = 128, seed: int = 0):
  """The classifier's parameters after `steps` Adam steps (1e-3) on seeded random batches."""
  model = Classifier(num_classes)
  params = model.init(jax.random.key(seed), jnp.asarray(images[:2]))['params']
  optimizer = optax.adam(1e-3)
  opt_state = optimizer.init(params)

  @jax.jit
  def step(params, opt_state, x, y):
    def loss_fn(p):
      logits, _ = model.apply({'params': p}, x)
      return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))
    grads = jax.grad(loss_fn)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  rng = np.random.default_rng(seed)
  for _ in interrupts.checked(range(steps)):
    rows = rng.integers(0, len(images), batch_size)
    params, opt_state = step(params, opt_state, images[rows], labels[rows])
  return params


@functools.lru_cache(maxsize=None)
def _jitted_apply(num_classes: int):
  """The classifier's (logits, features), jitted once per number of classes (features of a large
  set are computed a part at a time: one compile serves every call)."""
  model = Classifier(num_classes)
  return jax.jit(lambda p, x: model.apply({'params': p}, x))


def _apply_batched(params, num_classes: int, images: np.ndarray, batch_size: int = 500):
  apply = _jitted_apply(num_classes)
  logits, features = [], []
  for start in interrupts.checked(range(0, len(images), batch_size)):
    batch = np.asarray(images[start:start + batch_size], np.float32)
    out = apply(params, batch)
    logits.append(np.asarray(out[0]))
    features.append(np.asarray(out[1], np.float64))
  return np.concatenate(logits), np.concatenate(features)


def accuracy(params, num_classes: int, images: np.ndarray, labels: np.ndarray) -> float:
  logits, _ = _apply_batched(params, num_classes, images)
  return float(np.mean(np.argmax(logits, -1) == labels))


def features(params, num_classes: int, images: np.ndarray) -> np.ndarray:
  """The 128-d features [N, 128] (float64) of images [N, H, W, C] in [0, 1]."""
  return _apply_batched(params, num_classes, images)[1]


def _files(folder: str):
  """(info path, weights path) of the classifier kept in `folder`."""
  return os.path.join(folder, 'classifier.json'), os.path.join(folder, 'classifier.npz')


def kept_classifier(folder: str, dataset: str):
  """The info of the classifier kept in `folder` (None if it holds none); an error if it is another
  dataset's."""
  info_path, weights_path = _files(folder)
  if not (os.path.exists(info_path) and os.path.exists(weights_path)):
    return None
  with open(info_path) as f:
    info = json.load(f)
  if info['dataset'] != dataset:
    raise ValueError(f'{folder} holds the {info["dataset"]} classifier, not {dataset}\'s.')
  return info


def load_or_train(folder: str, data_config, steps: int = 2000, seed: int = 0):
  """(params, info) of the dataset's classifier kept in `folder`; trained and saved there first if
  the folder has none. A folder holding another dataset's classifier is refused."""
  from vaeprior_jax import checkpoints  # pylint: disable=g-import-not-at-top
  from vaeprior_jax import data  # pylint: disable=g-import-not-at-top
  classes = _needs_labels(data_config)
  dataset = data.identity(data_config)
  info = kept_classifier(folder, dataset)
  info_path, weights_path = _files(folder)
  if info is not None:
    return checkpoints.load_tree_npz(weights_path), info
  start = time.time()
  images, labels = load_labelled(data_config, 'train')
  params = train(images, labels, classes, steps, seed=seed)
  test_images, test_labels = load_labelled(data_config, 'test')
  info = {'name': NAME, 'dataset': dataset, 'steps': steps, 'batch_size': 128, 'seed': seed,
          'train_examples': len(images),
          'test_accuracy': accuracy(params, classes, test_images, test_labels),
          'train_seconds': time.time() - start}
  os.makedirs(folder, exist_ok=True)
  checkpoints.save_tree_npz(weights_path, params)
  with open(info_path, 'w') as f:
    json.dump(info, f, indent=2)
  return params, info


def distance(params, num_classes: int, images_a: np.ndarray, images_b: np.ndarray) -> float:
  """The CFD between two image sets."""
  return frechet.frechet_distance_of_features(features(params, num_classes, images_a),
                                              features(params, num_classes, images_b))
