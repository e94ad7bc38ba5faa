"""Your own data: `data.dataset=arrays` from an .npz (`data.arrays`), good files of each kind and every
kind of bad file."""

import os

import ml_collections
import numpy as np
import pytest

from vaeprior_jax import config as config_lib
from vaeprior_jax import data
from vaeprior_jax.data import arrays


def _write(tmp_path, name='data.npz', **arrays_):
  path = str(tmp_path / name)
  np.savez(path, **arrays_)
  return path


def _config(path, **data_settings):
  config = config_lib.defaults()
  config.data.update(dataset='arrays', path=path, **data_settings)
  return config.data


def test_levels_binary_values_and_vectors_are_read_as_float32_in_0_1(tmp_path):
  rng = np.random.default_rng(0)
  grey = rng.integers(0, 256, (30, 4, 4, 1), dtype=np.uint8)
  contents = arrays.read(_write(tmp_path, x_train=grey, x_test=grey[:5]))
  np.testing.assert_array_equal(contents.splits['train'], grey.astype(np.float32) / 255)
  assert not contents.binary and contents.splits['validation'] is None
  assert contents.shape == (4, 4, 1)
  # 0/255 uint8, bool and 0.0/1.0 float are binary.
  for x in (grey > 127, (grey > 127).astype(np.uint8) * 255, (grey > 127).astype(np.float64)):
    contents = arrays.read(_write(tmp_path, x_train=x, x_test=x[:5]))
    assert contents.binary and set(np.unique(contents.splits['test'])) <= {0.0, 1.0}
  vectors = rng.random((20, 7)).astype(np.float32)
  contents = arrays.read(_write(tmp_path, x_train=vectors, x_validation=vectors[:3],
                                x_test=vectors[:4], y_train=np.arange(20), y_test=np.arange(4)))
  assert contents.shape == (7, 1, 1) and contents.splits['validation'].shape == (3, 7, 1, 1)


def test_the_dataset_holds_out_validation_and_binarizes_levels_like_mnist(tmp_path):
  grey = np.random.default_rng(1).integers(0, 256, (50, 4, 4, 1), dtype=np.uint8)
  path = _write(tmp_path, x_train=grey, x_test=grey[:6])
  dataset = data.load(_config(path))
  assert dataset.dynamic and len(dataset.validation) == 5 and len(dataset.train) == 45
  assert len(dataset.test) == 6 * 10 and set(np.unique(dataset.test)) <= {0.0, 1.0}
  every = np.concatenate([dataset.train, dataset.validation])
  np.testing.assert_array_equal(np.sort(every, axis=0), np.sort(grey / np.float32(255), axis=0))
  levels = data.load(_config(path, binarize=False, validation_size=10))
  assert not levels.dynamic and len(levels.validation) == 10 and len(levels.test) == 6
  whole = data.load(_config(path, hold_out_validation=False))
  assert len(whole.train) == 50 and len(whole.validation) == 0
  with pytest.raises(ValueError, match="holds levels, not 0/1 values, and model.likelihood=bern"):
    data.check_binary_targets(_config(path, binarize=False), 'model.likelihood=bernoulli')
  data.check_binary_targets(_config(path), 'model.likelihood=bernoulli')  # Binarized: fine.


def _object_array():
  return np.array([{'a': 1}, None], dtype=object)


@pytest.mark.parametrize('contents, message', [
    (dict(x_train=np.zeros((4, 2, 2, 1))), "missing key 'x_test'; it has: x_train"),
    (dict(x_train=np.zeros((4, 2, 2, 1)), x_val=np.zeros((4, 2, 2, 1)), x_test=np.zeros((4, 2, 2, 1))),
     "unexpected key 'x_val'; allowed: x_train, x_validation, x_test, y_train"),
    (dict(x_train=_object_array(), x_test=np.zeros((4, 2, 2, 1))),
     "key 'x_train' cannot be read without unpickling"),
    (dict(x_train=np.zeros((4, 2, 2, 1)), x_test=np.zeros((4, 2, 2, 3))),
     r'x_test has examples of shape \(2, 2, 3\), x_train \(2, 2, 1\)'),
    (dict(x_train=np.full((4, 2, 2, 1), np.nan), x_test=np.zeros((4, 2, 2, 1))),
     'x_train holds 16 values that are NaN or infinite'),
    (dict(x_train=np.full((4, 2, 2, 1), 1.5), x_test=np.zeros((4, 2, 2, 1))),
     r'x_train holds values in \[1.5, 1.5\]; float arrays must be in \[0, 1\]'),
    (dict(x_train=np.zeros((4, 2, 2, 1)), x_test=np.zeros((0, 2, 2, 1))), 'x_test is empty'),
    (dict(x_train=np.zeros((4, 2, 2, 1), np.int64), x_test=np.zeros((4, 2, 2, 1))),
     'x_train has dtype int64; allowed: uint8'),
    (dict(x_train=np.zeros((4, 2, 2)), x_test=np.zeros((4, 2, 2))),
     r'x_train has shape \(4, 2, 2\); expected images \[N, H, W, C\] or vectors \[N, D\]'),
    (dict(x_train=np.zeros((4, 2)), x_test=np.zeros((4, 2)), y_train=np.arange(3)),
     r'y_train must be integer labels, one per example of x_train \(4\)'),
    (dict(x_train=np.zeros((4, 2)), x_test=np.zeros((4, 2)), y_test=np.zeros(4)),
     r'y_test must be integer labels.*dtype float64'),
])
def test_a_bad_file_is_one_line_naming_the_file_and_the_key(tmp_path, contents, message):
  path = _write(tmp_path, **contents)
  with pytest.raises(ValueError, match=message) as e:
    arrays.read(path)
  assert str(e.value).startswith(f"data.path '{path}': ") and '\n' not in str(e.value)


def test_a_missing_a_foreign_or_a_too_large_file_is_one_line(tmp_path):
  with pytest.raises(ValueError, match='data.dataset=arrays needs data.path'):
    arrays.read('')
  with pytest.raises(ValueError, match='no such file'):
    arrays.read(str(tmp_path / 'nope.npz'))
  foreign = tmp_path / 'foreign.npz'
  foreign.write_bytes(b'not a zip file at all')
  with pytest.raises(ValueError, match='not an .npz file'):
    arrays.read(str(foreign))
  path = _write(tmp_path, x_train=np.zeros((100, 8, 8, 1)), x_test=np.zeros((10, 8, 8, 1)))
  with pytest.raises(ValueError, match=r'its arrays take 0.00 GiB, more than the 0.00 GiB'):
    arrays.read(path, max_bytes=1000)
  small = _write(tmp_path, 'small.npz', x_train=np.zeros((100, 8, 8, 1), np.uint8),
                 x_test=np.zeros((10, 8, 8, 1), np.uint8))
  with pytest.raises(ValueError, match='more than the .* GiB this machine allows for data, as float'):
    arrays.read(small, max_bytes=10000)  # 7 kB stored, 28 kB as float32.
  assert arrays.read(small, max_bytes=10**6).binary
  # data.path is for arrays only; arrays needs it (before any data is read).
  config = config_lib.defaults()
  config.data.path = small
  with pytest.raises(ValueError, match='data.path is for data.dataset=arrays'):
    data.validate(config.data)
  with pytest.raises(ValueError, match='needs data.path'):
    data.validate(ml_collections.ConfigDict(dict(config_lib.defaults().data.to_dict(),
                                                 dataset='arrays')))
  assert os.path.exists(small)


def test_your_own_tfds_builder_by_name_reads_offline_from_its_manual_dir(tmp_path):
  from tests.own_dataset import tiny_grey  # pylint: disable=g-import-not-at-top (registers it)
  manual = tiny_grey.write_files(str(tmp_path / 'manual'))
  config = config_lib.defaults().data
  config.update(dataset='tiny_grey', manual_dir=manual, data_dir=str(tmp_path / 'tfds'))
  dataset = data.load(config)
  assert dataset.dynamic and dataset.input_shape == (8, 8, 1)
  assert len(dataset.train) == 40 and len(dataset.validation) == 8 and len(dataset.test) == 160
  with np.load(os.path.join(manual, tiny_grey.FILENAME)) as f:
    every = np.concatenate([dataset.train, dataset.validation])
    np.testing.assert_array_equal(np.sort(every.ravel()),
                                  np.sort(f['x_train'].ravel() / np.float32(255)))
  with pytest.raises(ValueError, match="registered already"):
    data.register_dataset('tiny_grey', data.SPECS['tiny_grey'])
  with pytest.raises(ValueError, match="other than arrays"):
    data.register_dataset('arrays', data.SPECS['tiny_grey'])
  missing = config_lib.defaults().data
  missing.update(dataset='tiny_grey', manual_dir=str(tmp_path), data_dir=str(tmp_path / 'tfds2'))
  with pytest.raises(data.DataError, match=f'Missing data file {tmp_path}/tiny_grey.npz'):
    data.load(missing)


def test_your_labels_give_the_classifier_distance_of_the_sample_quality_report(tmp_path):
  """Arrays with y_train and y_test: the report trains its classifier on them (kept per file: another
  file is refused), and scores the samples; without labels it names what it needs."""
  from vaeprior_jax.evaluation import report  # pylint: disable=g-import-not-at-top
  from vaeprior_jax.evaluation.sample_quality import classifier_distance  # pylint: disable=g-import-not-at-top
  from vaeprior_jax.train import trainer  # pylint: disable=g-import-not-at-top
  import helpers  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, (72, 8, 8, 1), dtype=np.uint8)
  y = rng.integers(0, 3, 72)
  path = _write(tmp_path, x_train=x[:56], y_train=y[:56], x_test=x[56:], y_test=y[56:])
  config = helpers.tiny_config()
  config.data.update(dataset='arrays', path=path)
  config.train.num_steps = 4
  assert classifier_distance.num_classes(config.data) == int(y.max()) + 1
  workdir, classifier_dir = str(tmp_path / 'run'), str(tmp_path / 'classifier')
  trainer.train_and_evaluate(config, workdir)
  quality = report.sample_quality(workdir, classifier_dir, num_images=8, classifier_steps=3)
  assert quality['classifier']['dataset'].startswith('arrays-')
  assert quality['num_reference'] == 16 and np.isfinite(quality['cfd_samples'])
  other = _write(tmp_path, 'other.npz', x_train=x[:56], y_train=y[:56] % 2, x_test=x[56:],
                 y_test=y[56:] % 2)
  config.data.path = other
  workdir2 = str(tmp_path / 'run2')
  trainer.train_and_evaluate(config, workdir2)
  with pytest.raises(ValueError, match='holds the arrays-.* classifier, not arrays-'):
    report.sample_quality(workdir2, classifier_dir, num_images=8)
  unlabelled = _write(tmp_path, 'unlabelled.npz', x_train=x[:56], x_test=x[56:])
  config.data.path = unlabelled
  assert classifier_distance.num_classes(config.data) == 0
  workdir3 = str(tmp_path / 'run3')
  trainer.train_and_evaluate(config, workdir3)
  with pytest.raises(ValueError, match='the CFD needs labels .*or arrays with y_train and y_test'):
    report.check_sample_quality(workdir3, classifier_dir)


def test_the_two_stage_and_vaepp_configs_train_and_evaluate_your_arrays(tmp_path):
  """Dai & Wipf's two-stage VAE on vectors (its dense first stage, a Gaussian decoder on levels) and
  VAEPP on binary images (its pull-back prior, truncated posterior, training and log Z; dense nets
  here for the suite's time: the residual ones take the same 28x28 images from the built-in
  datasets elsewhere), each trained and evaluated from an .npz through the library; VAEPP's
  grey-level entries (a Bernoulli likelihood on grey levels, as its code trains MNIST) refuse
  levels in one line that says what to set."""
  from experiments.configs import dai2019, vaepp  # pylint: disable=g-import-not-at-top
  from vaeprior_jax.evaluation import report  # pylint: disable=g-import-not-at-top
  from vaeprior_jax.train import trainer  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  vectors = rng.random((60, 12)).astype(np.float32)
  images = rng.integers(0, 256, (160, 28, 28, 1), dtype=np.uint8)
  runs = {
      'two_stage': (dai2019.get_config('two_stage,dense,mnist,runlocal'),
                    _write(tmp_path, 'vectors.npz', x_train=vectors[:48], x_test=vectors[48:])),
      'vaepp': (vaepp.get_config('vaepp,static_mnist,runlocal'),
                _write(tmp_path, 'binary.npz', x_train=images[:144] > 127,
                       x_test=images[144:] > 127)),
  }
  for name, (config, path) in runs.items():
    config.data.update(dataset='arrays', path=path, validation_size=8)
    config.train.batch_size = 16
    config.train.num_steps = 4
    config.train.checkpoint_every_steps = config.train.log_every_steps = 2
    if name == 'vaepp':
      config.model.update(net='dense', discriminator='dense', pullback_sample_start='base')
      config.train.update(latent_gan_epochs=0.0, vaepp_prior_samples=4)
    workdir = str(tmp_path / name)
    trainer.train_and_evaluate(config, workdir)
    result = report.evaluate(workdir, 'test', num_samples=4, max_examples=8, active_units=False,
                             write_images=False, batch_size=8)
    assert np.isfinite(result['nll']) and -result['nll'] >= result['elbo'] - 1e-3, (name, result)
    assert result['step'] >= 4 and result['num_examples'] == 8  # (Two-stage: + stage 2's.)
  assert 'log_z' in result  # The pull-back prior's NLL used its log Z.
  grey = vaepp.get_config('vaepp,mnist,runlocal')
  grey.data.update(dataset='arrays', path=_write(tmp_path, 'grey.npz', x_train=images[:144],
                                                 x_test=images[144:]))
  with pytest.raises(ValueError, match='holds levels, not 0/1 values, and model.likelihood='
                                       'bernoulli .* set data.binarize=True'):
    trainer.train_and_evaluate(grey, str(tmp_path / 'grey'))
  assert not os.path.exists(tmp_path / 'grey' / 'checkpoints')
