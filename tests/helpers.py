"""Shared test helpers: small configs and mock data that never touches the network."""

import contextlib
from unittest import mock

import tensorflow_datasets as tfds

from experiments.configs import xu2019
from vaeprior_jax import data

SHARED_MNIST = __import__('os').path.join(
    __import__('os').path.dirname(__file__), '..', '..', 'shared', 'data', 'binarized_mnist')


@contextlib.contextmanager
def mock_binarized_mnist(num_examples: int = 64):
  """tfds' mock data for binarized_mnist (binary pixels), with the network probe stubbed out."""
  with tfds.testing.mock_data(num_examples=num_examples, max_value=1), \
       mock.patch.object(data, '_reachable', lambda url, timeout=5.0: True):
    yield


def tiny_config(**model):
  config = xu2019.get_config('runlocal')
  for k, v in model.items():
    config.model[k] = v
  return config
