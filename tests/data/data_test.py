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
  with pytest.raises(ValueError, match="Unknown data.dataset 'mnist_typo'; allowed: binarized_mnist, "
                                      "mnist, fashion_mnist"):
    data.load(config)


def test_missing_folder_and_files_are_named(tmp_path):
  with pytest.raises(data.DataError, match='(?s)is not a folder.*binarized_mnist_train.amat'):
    data.load(_data_config(tmp_path, str(tmp_path / 'nowhere')))
  manual = tmp_path / 'manual'
  manual.mkdir()
  with pytest.raises(data.DataError, match=f'Missing data file {manual}/binarized_mnist_test.amat'):
    data.load(_data_config(tmp_path, str(manual)))


def test_corrupt_file_is_named_with_the_expected_layout(tmp_path):
  manual = tmp_path / 'manual'
  manual.mkdir()
  for name in ('train', 'valid', 'test'):
    (manual / f'binarized_mnist_{name}.amat').write_text('0 1 0\n')
  with pytest.raises(data.DataError, match=r'(?s)Corrupt data file .*binarized_mnist_test.amat: '
                                           r'expected 15680000 bytes.*784 space-separated'):
    data.load(_data_config(tmp_path, str(manual)))


def test_no_network_and_no_manual_dir_says_what_to_download(tmp_path, monkeypatch):
  monkeypatch.setattr(data, '_reachable', lambda url, timeout=5.0: False)
  with pytest.raises(data.DataError, match=r'(?s)cannot be reached.*larocheh/public/datasets/binarized_'
                                           r'mnist/binarized_mnist_test.amat.*manual_dir=FOLDER'):
    data.load(_data_config(tmp_path))


def test_uses_the_copy_another_process_prepared_meanwhile(tmp_path, monkeypatch):
  """Two runs preparing one data_dir at once: tfds fails to move the second one's copy into place
  ('Destination ... already exists'); that run then reads the first one's copy. A failure that
  leaves nothing prepared is still an error naming the dataset and the folder. Each preparation
  from a manual_dir extracts into a folder of its own, removed afterwards (tfds' shared one would
  hand Fashion-MNIST the MNIST images extracted there before: their files have the same names)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  state = {'prepared': False, 'error': 'Cannot rename incomplete.X_1.0.0: 1.0.0 already exists'}
  extract_dirs = []

  class Builder:
    url_infos = {}
    data_dir_root = tmp_path

    def is_prepared(self):
      return state['prepared']

    def download_and_prepare(self, download_config=None):
      extract_dirs.append(download_config.extract_dir)
      assert os.path.isdir(download_config.extract_dir)
      state['prepared'] = state['error'].startswith('Cannot rename')  # The other process won.
      raise OSError(state['error'])

  monkeypatch.setattr(tfds, 'builder', lambda *args, **kwargs: Builder())
  monkeypatch.setattr(data, 'check_manual_dir', lambda *args: None)
  config = _data_config(tmp_path, str(tmp_path))
  assert data.get_builder(config).is_prepared()
  state.update(prepared=False, error='No space left on device')
  with pytest.raises(data.DataError, match=f'Preparing binarized_mnist from {tmp_path} failed: No '
                                           'space left on device'):
    data.get_builder(config)
  assert len(set(extract_dirs)) == 2, extract_dirs
  for folder in extract_dirs:
    assert os.path.dirname(folder) == str(tmp_path / 'downloads') and not os.path.exists(folder)


def test_a_copy_prepared_from_the_other_datasets_files_is_refused():
  # Whole splits with the other dataset's mean grey level (the files' means: MNIST 0.1307,
  # Fashion-MNIST 0.2860 over the training images).
  with pytest.raises(data.DataError, match=r'prepared mnist/train images have mean grey level '
                                           r'0\.2860, but mnist\'s files have 0\.1307 '
                                           r'\(fashion_mnist: 0\.2860\)'):
    data.check_grey_levels('mnist', 'train', np.full((60000, 1, 1, 1), 0.2860, np.float32))
  with pytest.raises(data.DataError, match='prepared fashion_mnist/test images'):
    data.check_grey_levels('fashion_mnist', 'test', np.full((10000, 1, 1, 1), 0.1325, np.float32))
  data.check_grey_levels('mnist', 'train', np.full((60000, 1, 1, 1), 0.1307, np.float32))
  data.check_grey_levels('mnist', 'train', np.full((64, 1, 1, 1), 0.5, np.float32))  # Mock data.
  data.check_grey_levels('binarized_mnist', 'train', np.full((60000, 1, 1, 1), 0.5, np.float32))


def test_a_cache_written_from_the_other_datasets_files_is_refused(tmp_path):
  rng = np.random.default_rng(0)
  grey = lambda n, mean: (rng.random((n, 2, 2, 1)) < mean).astype(np.float32)  # Mean ~ `mean`.
  path = str(tmp_path / 'mnist.npz')
  data.write_cache(data.Dataset('mnist', grey(50000, 0.2860), grey(100, 0.2860),
                                grey(100000, 0.1325), True), path)
  with pytest.raises(data.DataError, match=f'The dataset cache {path}: The prepared mnist/train '
                                           'images have mean grey level 0.28'):
    data.read_cache(path, 'mnist')
  data.write_cache(data.Dataset('mnist', grey(50000, 0.1307), grey(100, 0.2860),
                                grey(100000, 0.1325), True), path)
  assert data.read_cache(path, 'mnist').train.shape == (50000, 2, 2, 1)


@pytest.mark.skipif(not os.path.isdir(helpers.SHARED_MNIST),
                    reason='the shared .amat files live outside the repository (../shared)')
def test_prepares_static_mnist_offline_from_the_original_files(tmp_path):
  # Into the suite's tfds folder (TFDS_DATA_DIR, tests/conftest.py), where the notebook tests then
  # find it prepared, or where one of them prepared it already: either way from the files.
  config = _data_config(tmp_path, helpers.SHARED_MNIST)
  config.data_dir = ''
  dataset = data.load(config)
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


def _dynamic_config(name, **kw):
  config = dict(dataset=name, manual_dir='', data_dir='', validation_size=20, split_seed=0,
                test_binarizations=10, test_binarization_seed=0)
  config.update(kw)
  return ml_collections.ConfigDict(config)


@pytest.mark.parametrize('name', ['mnist', 'fashion_mnist'])
def test_dynamic_binarization_protocol_of_appendix_b1(name):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  with helpers.mock_tfds(64):
    dataset = data.load(_dynamic_config(name))
    again = data.load(_dynamic_config(name))
    other_split = data.load(_dynamic_config(name, split_seed=1))
    builder = tfds.builder(name)
    raw_train, raw_test = data.load_split(builder, 'train'), data.load_split(builder, 'test')
  assert dataset.dynamic and dataset.input_shape == (28, 28, 1)
  assert len(dataset.train) == 44 and len(dataset.validation) == 20 and len(dataset.test) == 640
  # Train and validation partition the training images, kept as grey levels.
  rows = lambda a: sorted(map(bytes, np.asarray(a).reshape(len(a), -1)))
  assert rows(np.concatenate([dataset.train, dataset.validation])) == rows(raw_train)
  assert len(np.unique(dataset.train)) > 2 and dataset.train.max() <= 1.0
  assert rows(other_split.validation) != rows(dataset.validation)
  # The test set: 10 fixed binarizations, each pixel 1 with probability equal to its intensity.
  assert set(np.unique(dataset.test)) <= {0.0, 1.0}
  tests = dataset.test.reshape((10,) + raw_test.shape)
  assert not np.array_equal(tests[0], tests[1])
  np.testing.assert_allclose(np.mean(tests.mean(0) - raw_test), 0.0, atol=0.005)
  assert np.corrcoef(tests.mean(0).ravel(), raw_test.ravel())[0, 1] > 0.9
  np.testing.assert_array_equal(again.test, dataset.test)
  np.testing.assert_array_equal(again.validation, dataset.validation)
  # Validation is binarized anew for each evaluation, reproducibly.
  v0, v1 = dataset.eval_images('validation', 0), dataset.eval_images('validation', 1)
  assert set(np.unique(v0)) <= {0.0, 1.0} and not np.array_equal(v0, v1)
  np.testing.assert_array_equal(v0, dataset.eval_images('validation', 0))
  np.testing.assert_array_equal(dataset.eval_images('test', 5), dataset.test)


def test_whole_splits_are_what_the_files_hold():
  """The reference images of sample-quality protocols: the training split with its carved-out
  validation images, the test images once and as grey levels, whatever `data.binarize` says."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  with helpers.mock_tfds(64):
    config = _dynamic_config('mnist', binarize=True)
    splits = data.whole_splits(config)
    train, test = splits['train'], splits['test']
    builder = tfds.builder('mnist')
    raw_train, raw_test = data.load_split(builder, 'train'), data.load_split(builder, 'test')
    dataset = data.load(config)
  rows = lambda a: sorted(map(bytes, np.asarray(a).reshape(len(a), -1)))
  assert len(dataset.train) == 44 and len(train) == 64
  assert rows(train) == rows(raw_train)
  np.testing.assert_array_equal(train[:44], dataset.train)  # load's order, training images first
  np.testing.assert_array_equal(test, raw_test)
  assert len(np.unique(test)) > 2 and config.binarize  # the caller's config is left as it was


def test_validation_size_must_fit(tmp_path):
  with helpers.mock_tfds(64), pytest.raises(ValueError, match=r'validation_size 64 must be in \(0, 64\)'):
    data.load(_dynamic_config('mnist', validation_size=64))


def test_missing_mnist_files_are_named(tmp_path):
  config = _dynamic_config('mnist', manual_dir=str(tmp_path), data_dir=str(tmp_path / 'tfds'))
  with pytest.raises(data.DataError, match=r'(?s)Missing data file .*t10k-images-idx3-ubyte.gz.*'
                                           r'cvdf-datasets/mnist/train-labels-idx1-ubyte.gz'):
    data.load(config)


def test_binarized_train_batches_are_fresh_each_epoch_and_resume_exactly():
  images = np.full((40, 4, 4, 1), 0.3, np.float32)
  it = data.train_batches(images, batch_size=8, seed=3, binarize_batches=True)
  run = [next(it) for _ in range(12)]
  assert set(np.unique(run)) <= {0.0, 1.0}
  np.testing.assert_allclose(np.mean(run), 0.3, atol=0.03)
  assert not np.array_equal(run[0], run[5])  # Not the same binary images every epoch.
  resumed = data.train_batches(images, batch_size=8, seed=3, start_step=7, binarize_batches=True)
  np.testing.assert_array_equal([next(resumed) for _ in range(5)], run[7:12])


def test_array_cache_round_trips_every_kind_of_split_exactly(tmp_path):
  rng = np.random.default_rng(0)
  dataset = data.Dataset(
      'mnist',
      train=(rng.integers(0, 256, (7, 5, 5, 1)) / np.float32(255.0)).astype(np.float32),  # grey
      validation=(rng.random((3, 5, 5, 1)) > 0.5).astype(np.float32),                       # 0/1
      test=rng.random((4, 5, 5, 1)).astype(np.float32),                                      # other
      dynamic=True)
  path = str(tmp_path / 'cache' / 'x.npz')
  data.write_cache(dataset, path)
  back = data.read_cache(path, 'mnist')
  assert back.dynamic
  for split in data.SPLITS:
    assert back.split(split).dtype == np.float32
    np.testing.assert_array_equal(back.split(split), dataset.split(split))
  colour = data.Dataset('cifar10', *(rng.integers(0, 256, (2, 4, 4, 3), dtype=np.uint8),) * 3)
  data.write_cache(colour, path)
  np.testing.assert_array_equal(data.read_cache(path, 'cifar10').train, colour.train)
  with pytest.raises(data.DataError, match=r"cache .*x.npz is unreadable \(it holds 'cifar10', not "
                                           r"'mnist'\); delete it"):
    data.read_cache(path, 'mnist')
  with open(path, 'wb') as f:
    f.write(b'not a zip file')
  with pytest.raises(data.DataError, match='x.npz is unreadable'):
    data.read_cache(path, 'cifar10')


def test_load_keeps_the_prepared_splits_in_the_cache_and_reads_them_without_tfds(tmp_path,
                                                                               monkeypatch):
  config = _data_config(tmp_path)
  config.cache_dir = str(tmp_path / 'cache')
  with helpers.mock_binarized_mnist(32):
    first = data.load(config)
  path = data.cache_path(config)
  assert os.path.exists(path) and os.path.dirname(path) == config.cache_dir

  def no_tfds(*args, **kwargs):
    raise AssertionError('tfds was used although the cache holds the dataset')

  monkeypatch.setattr(data, 'get_builder', no_tfds)
  second = data.load(config)
  for split in data.SPLITS:
    np.testing.assert_array_equal(second.split(split), first.split(split))
  # Settings that change the splits are another cache file; the others do not matter.
  config.test_binarizations = 3  # static MNIST is binarized once and for all
  assert data.cache_path(config) == path
  config.dataset = 'mnist'
  mnist_path = data.cache_path(config)
  config.split_seed = 1
  assert data.cache_path(config) not in (path, mnist_path)


def test_grey_levels_without_binarization(tmp_path):
  """data.binarize=False (Dai & Wipf): the same train/validation split, every split as grey levels,
  the test set once; its cache is a file of its own."""
  with helpers.mock_tfds(64):
    binarized = data.load(_dynamic_config('mnist'))
    grey = data.load(_dynamic_config('mnist', binarize=False))
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    raw_test = data.load_split(tfds.builder('mnist'), 'test')
  assert binarized.dynamic and not grey.dynamic
  np.testing.assert_array_equal(grey.train, binarized.train)
  np.testing.assert_array_equal(grey.validation, binarized.validation)
  np.testing.assert_array_equal(grey.test, raw_test)  # Once, not binarized.
  assert len(np.unique(grey.test)) > 2
  np.testing.assert_array_equal(grey.eval_images('validation', 3), grey.validation)
  batch = next(data.train_batches(grey.train, 8, seed=0, binarize_batches=grey.dynamic))
  assert len(np.unique(batch)) > 2
  config = _dynamic_config('mnist', cache_dir=str(tmp_path))
  assert data.cache_path(config) != data.cache_path(_dynamic_config('mnist', binarize=False,
                                                                    cache_dir=str(tmp_path)))
  # VAEPP's evaluation of a grey-level run: the binarized run's test images, each beside the grey
  # image it was drawn from; other splits binarized once with the seed.
  pairs = data.grey_proposal_pairs(grey, _dynamic_config('mnist', binarize=False), 'test')
  assert pairs.shape == binarized.test.shape[:-1] + (2,)
  np.testing.assert_array_equal(pairs[..., :1], binarized.test)
  np.testing.assert_array_equal(pairs[..., 1:], np.concatenate([raw_test] * 10))
  valid = data.grey_proposal_pairs(grey, _dynamic_config('mnist', binarize=False), 'validation', 3)
  np.testing.assert_array_equal(valid[..., :1], binarized.eval_images('validation', 3))
  np.testing.assert_array_equal(valid[..., 1:], grey.validation)
  with pytest.raises(ValueError, match='needs a grey-level dataset .* data.binarize=False'):
    data.grey_proposal_pairs(binarized, _dynamic_config('mnist'), 'test')



def _read_idx_images(path):
  """The images of a gzipped IDX file (magic 0x00000803, then N, rows, cols), as [N, rows, cols]."""
  import gzip  # pylint: disable=g-import-not-at-top
  with gzip.open(path, 'rb') as f:
    raw = f.read()
  magic, n, rows, cols = np.frombuffer(raw[:16], '>u4')
  assert magic == 0x803, hex(magic)
  return np.frombuffer(raw[16:], np.uint8).reshape(n, rows, cols)


@pytest.mark.parametrize('name', ['mnist', 'fashion_mnist'])
def test_prepares_mnist_like_datasets_offline_from_the_original_files(name):
  """tfds' own builder from ../shared/data/NAME (as in CI): the splits hold exactly the files' images,
  train and validation are the seeded split of the training file, and the test binarizations are the
  seeded ones (each a Bernoulli draw of the test file's grey levels). Both datasets go into the
  suite's one tfds folder, as into a user's ~/tensorflow_datasets: their files have the same names,
  and the one prepared second must still get its own images."""
  folder = os.path.join(helpers.SHARED_DATA, name)
  if not os.path.isdir(folder):
    pytest.skip(f'{folder} is not here (CI has it)')
  # Into the suite's tfds folder, shared with the notebook tests (as for static MNIST above).
  config = _dynamic_config(name, manual_dir=folder, validation_size=0)
  dataset = data.load(config)
  train_file = _read_idx_images(os.path.join(folder, 'train-images-idx3-ubyte.gz'))
  test_file = _read_idx_images(os.path.join(folder, 't10k-images-idx3-ubyte.gz'))
  as_bytes = lambda a: np.round(np.asarray(a) * 255).astype(np.uint8).reshape(len(a), 28, 28)
  assert dataset.train.shape == (50000, 28, 28, 1) and dataset.validation.shape[0] == 10000
  # tfds stores the examples in its own order: compare the sets of images.
  sort_rows = lambda a: a.reshape(len(a), -1)[np.lexsort(a.reshape(len(a), -1).T[::-1])]
  np.testing.assert_array_equal(
      sort_rows(np.concatenate([as_bytes(dataset.train), as_bytes(dataset.validation)])),
      sort_rows(train_file))
  # The split is the seeded permutation of tfds' training examples (data.split_seed = 0).
  train_grey = data.load_split(data.get_builder(config), 'train', name)
  order = np.random.default_rng(0).permutation(len(train_grey))
  np.testing.assert_array_equal(dataset.validation, train_grey[order[:10000]])
  # 10 binarizations of the test images, seeded: the grey levels, in tfds' order, binarized.
  test_grey = data.load_split(data.get_builder(config), 'test', name)
  np.testing.assert_array_equal(sort_rows(as_bytes(test_grey)), sort_rows(test_file))
  expected = np.concatenate([data.binarize(test_grey, [0, i]) for i in range(10)])
  np.testing.assert_array_equal(dataset.test, expected)


def test_without_a_held_out_validation_split_train_is_the_whole_training_split(tmp_path):
  """data.hold_out_validation=False (Dai & Wipf's code): every training image trains, in the seeded
  order; the empty validation split is refused by name, as is early stopping, which needs it."""
  from vaeprior_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  from vaeprior_jax.train import trainer  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  with helpers.mock_tfds(64):
    whole = data.load(_dynamic_config('mnist', binarize=False, hold_out_validation=False,
                                      cache_dir=str(tmp_path)))
    cached = data.load(_dynamic_config('mnist', binarize=False, hold_out_validation=False,
                                       cache_dir=str(tmp_path)))
    held_out = data.load(_dynamic_config('mnist', binarize=False, cache_dir=str(tmp_path)))
    raw_train = data.load_split(tfds.builder('mnist'), 'train')
  rows = lambda a: sorted(map(bytes, np.asarray(a).reshape(len(a), -1)))
  assert len(whole.train) == 64 and rows(whole.train) == rows(raw_train)
  assert len(whole.validation) == 0 and len(held_out.validation) == 20
  np.testing.assert_array_equal(cached.train, whole.train)  # (its own cache file)
  with pytest.raises(ValueError, match='The validation split of mnist is empty'):
    whole.split('validation')
  config = config_lib.defaults()
  config.data.update(dataset='mnist', binarize=True, hold_out_validation=False)
  config.train.early_stopping = True
  with pytest.raises(ValueError, match='train.early_stopping=True needs a validation split, but '
                                       'data.hold_out_validation=False'):
    trainer.train_and_evaluate(config, str(tmp_path / 'run'))
