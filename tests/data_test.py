"""Input pipeline: offline preparation, clear errors on bad data, deterministic resumable batches."""

import os

import ml_collections
import numpy as np
import pytest

import helpers
from vaeprior_jax import data


def _data_config(tmp_path, manual_dir=''):
  return ml_collections.ConfigDict(dict(dataset='binarized_mnist', manual_dir=manual_dir,
                                        data_dir=str(tmp_path / 'tfds')))


def test_unknown_dataset_lists_the_allowed_ones(tmp_path):
  config = _data_config(tmp_path)
  config.dataset = 'mnist_typo'
  with pytest.raises(ValueError, match="Unknown data.dataset 'mnist_typo'; allowed: binarized_mnist"):
    data.load(config)


def test_missing_folder_and_files_are_named(tmp_path):
  with pytest.raises(data.DataError, match='(?s)is not a folder.*binarized_mnist_train.amat'):
    data.load(_data_config(tmp_path, str(tmp_path / 'nowhere')))
  manual = tmp_path / 'manual'
  manual.mkdir()
  with pytest.raises(data.DataError, match=f'Missing data file {manual}/binarized_mnist_train.amat'):
    data.load(_data_config(tmp_path, str(manual)))


def test_corrupt_file_is_named_with_the_expected_layout(tmp_path):
  manual = tmp_path / 'manual'
  manual.mkdir()
  for name in ('train', 'valid', 'test'):
    (manual / f'binarized_mnist_{name}.amat').write_text('0 1 0\n')
  with pytest.raises(data.DataError, match=r'(?s)Corrupt data file .*binarized_mnist_train.amat: '
                                           r'expected 78400000 bytes.*784 space-separated'):
    data.load(_data_config(tmp_path, str(manual)))


def test_no_network_and_no_manual_dir_says_what_to_download(tmp_path, monkeypatch):
  monkeypatch.setattr(data, '_reachable', lambda url, timeout=5.0: False)
  with pytest.raises(data.DataError, match=r'(?s)cannot be reached.*larocheh/public/datasets/binarized_'
                                           r'mnist/binarized_mnist_test.amat.*manual_dir=FOLDER'):
    data.load(_data_config(tmp_path))


@pytest.mark.skipif(not os.path.isdir(helpers.SHARED_MNIST),
                    reason='the shared .amat files live outside the repository (../shared)')
def test_prepares_static_mnist_offline_from_the_original_files(tmp_path):
  dataset = data.load(_data_config(tmp_path, helpers.SHARED_MNIST))
  assert dataset.train.shape == (50000, 28, 28, 1)
  assert dataset.validation.shape == dataset.test.shape == (10000, 28, 28, 1)
  # The same images as the .amat file (tfds stores them in another order, hence the sort).
  test_rows = np.loadtxt(os.path.join(helpers.SHARED_MNIST, 'binarized_mnist_test.amat'),
                         dtype=np.uint8)
  got = dataset.test.reshape(10000, 784).astype(np.uint8)
  sort_rows = lambda a: a[np.lexsort(a.T[::-1])]
  np.testing.assert_array_equal(sort_rows(got), sort_rows(test_rows))


def test_mock_data_loads_as_binary_images():
  with helpers.mock_binarized_mnist(32):
    dataset = data.load(ml_collections.ConfigDict(dict(dataset='binarized_mnist', manual_dir='',
                                                       data_dir='')))
  assert dataset.input_shape == (28, 28, 1)
  assert set(np.unique(dataset.train)) <= {0.0, 1.0}


def test_train_batches_are_deterministic_epochs_and_resume_exactly():
  images = np.arange(40, dtype=np.float32).reshape(40, 1, 1, 1)
  it = data.train_batches(images, batch_size=8, seed=3)
  run = [next(it)[:, 0, 0, 0] for _ in range(12)]  # 5 batches per epoch: 2.4 epochs.
  for epoch in range(2):
    seen = np.concatenate(run[5 * epoch:5 * epoch + 5])
    np.testing.assert_array_equal(np.sort(seen), np.arange(40))  # Each example once per epoch.
  assert not np.array_equal(np.concatenate(run[:5]), np.concatenate(run[5:10]))  # Reshuffled.
  assert not np.array_equal(np.concatenate(run[:5]), np.arange(40))
  again = data.train_batches(images, batch_size=8, seed=3)
  np.testing.assert_array_equal([next(again)[:, 0, 0, 0] for _ in range(12)], run)
  resumed = data.train_batches(images, batch_size=8, seed=3, start_step=7)
  np.testing.assert_array_equal([next(resumed)[:, 0, 0, 0] for _ in range(5)], run[7:12])
  other = data.train_batches(images, batch_size=8, seed=4)
  assert not np.array_equal(next(other), run[0])


def test_eval_batches_pad_and_subset():
  images = np.arange(10, dtype=np.float32).reshape(10, 1, 1, 1)
  indices, batches = data.eval_batches(images, batch_size=4)
  batches = list(batches)
  np.testing.assert_array_equal(indices, np.arange(10))
  assert [m.sum() for _, m in batches] == [4, 4, 2]
  np.testing.assert_array_equal(np.concatenate([b[m] for b, m in batches])[:, 0, 0, 0], np.arange(10))
  indices, batches = data.eval_batches(images, batch_size=4, max_examples=5, seed=1)
  assert len(indices) == 5 and len(set(indices)) == 5
  assert not np.array_equal(indices, np.arange(5))  # A random subset, not the first rows.
  np.testing.assert_array_equal(data.eval_batches(images, 4, 5, seed=1)[0], indices)
