"""Shared test helpers: small configs and mock data that never touches the network."""

import contextlib
from unittest import mock

import tensorflow_datasets as tfds

from experiments.configs import xu2019
from vaeprior_jax import data

SHARED_MNIST = __import__('os').path.join(
    __import__('os').path.dirname(__file__), '..', '..', 'shared', 'data', 'binarized_mnist')


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
  from vaeprior_jax import models  # pylint: disable=g-import-not-at-top
  from vaeprior_jax import training  # pylint: disable=g-import-not-at-top
  config = training.load_config(workdir)
  model = models.create(config.model, input_shape)
  params, step = training.restore_params(workdir, config, model, input_shape, 'latest')
  return jax.device_get(params), step


def tiny_config(**model):
  config = xu2019.get_config('runlocal')
  for k, v in model.items():
    config.model[k] = v
  return config
