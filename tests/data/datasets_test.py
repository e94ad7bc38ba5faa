"""Omniglot (Burda et al.'s chardata.mat through the project's tfds builder), CIFAR-10 and CelebA."""

import os
from unittest import mock

import jax
import ml_collections
import numpy as np
import pytest
import scipy.io

import helpers
from vaeprior_jax import checkpoints
from vaeprior_jax import data
from vaeprior_jax.data.tfds_builders import burda_omniglot
from vaeprior_jax.data.tfds_builders import chardata
from vaeprior_jax.evaluation import report
from vaeprior_jax.evaluation.sample_quality import fid
from vaeprior_jax.evaluation.sample_quality import frechet
from vaeprior_jax import models
from vaeprior_jax.train import trainer

SIZES = {'train': 40, 'test': 12}


def _write_chardata(path, sizes=SIZES, seed=0):
  """A small chardata.mat in the real layout; returns the row-major images [N, 28, 28] per split."""
  rng = np.random.default_rng(seed)
  images, contents = {}, {}
  for split, (image_key, target_key, char_key) in chardata.SPLIT_KEYS.items():
    n = sizes[split]
    x = rng.random((n, 28, 28))
    images[split] = x
    # One column per image, each flattened column-major (as MATLAB stores a 28x28 image).
    contents[image_key] = np.stack([im.flatten(order='F') for im in x], axis=1)
    alphabets = rng.integers(0, chardata.NUM_ALPHABETS, n)
    contents[target_key] = np.eye(chardata.NUM_ALPHABETS)[alphabets].T
    contents[char_key] = rng.integers(1, 20, (1, n))
  scipy.io.savemat(path, contents)
  return images


def _config(tmp_path, manual_dir, **kwargs):
  return ml_collections.ConfigDict(dict(dict(
      dataset='omniglot', manual_dir=str(manual_dir), data_dir=str(tmp_path / 'tfds'),
      validation_size=8, split_seed=0, test_binarizations=10, test_binarization_seed=0), **kwargs))


@pytest.fixture
def small_builder():
  with mock.patch.object(burda_omniglot.BurdaOmniglot, 'EXPECTED_SIZES', SIZES):
    yield


def test_chardata_columns_are_column_major_images(tmp_path):
  path = str(tmp_path / 'chardata.mat')
  images = _write_chardata(path)
  splits = chardata.read_chardata(path, SIZES)
  for split, x in images.items():
    np.testing.assert_allclose(splits[split][0][..., 0], x, rtol=1e-6)
  # Orientation on a known image: a single pixel at row 2, column 5.
  one = np.zeros((28, 28))
  one[2, 5] = 1.0
  contents = scipy.io.loadmat(path)
  contents['data'][:, 0] = one.flatten(order='F')
  scipy.io.savemat(path, {k: v for k, v in contents.items() if not k.startswith('__')})
  image = chardata.read_chardata(path, SIZES)['train'][0][0, ..., 0]
  assert image[2, 5] == 1.0 and image.sum() == 1.0


def test_omniglot_loads_through_the_builder_with_dynamic_binarization(tmp_path, small_builder):
  manual = tmp_path / 'manual'
  manual.mkdir()
  images = _write_chardata(str(manual / 'chardata.mat'))
  dataset = data.load(_config(tmp_path, manual))
  assert dataset.dynamic and dataset.input_shape == (28, 28, 1)
  assert dataset.train.shape[0] == 32 and dataset.validation.shape[0] == 8
  # Train + validation are the training images (as a set), as grey levels.
  got = np.concatenate([dataset.train, dataset.validation])[..., 0]
  np.testing.assert_allclose(np.sort(got.reshape(40, -1), axis=0),
                             np.sort(images['train'].reshape(40, -1), axis=0), rtol=1e-6)
  # The test set: 10 fixed binarizations of the 12 test images.
  assert dataset.test.shape == (120, 28, 28, 1)
  assert set(np.unique(dataset.test)) <= {0.0, 1.0}
  np.testing.assert_allclose(dataset.test.reshape(10, 12, -1).mean(0).mean(),
                             images['test'].mean(), atol=0.02)


def test_missing_and_corrupt_chardata_are_named(tmp_path, small_builder):
  manual = tmp_path / 'manual'
  manual.mkdir()
  with pytest.raises(data.DataError, match=f'(?s)Missing data file {manual}/chardata.mat.*'
                                          'yburda/iwae'):
    data.load(_config(tmp_path, manual))
  (manual / 'chardata.mat').write_bytes(b'not a matlab file' * 10)
  with pytest.raises(data.DataError, match=r'(?s)chardata.mat as a MATLAB file.*data \[784, 24345\]'):
    data.load(_config(tmp_path, manual))
  _write_chardata(str(manual / 'chardata.mat'), sizes={'train': 40, 'test': 11})
  with pytest.raises(data.DataError, match=r'testdata has shape \(784, 11\), expected \(784, 12\)'):
    data.load(_config(tmp_path, manual))


def test_fid_of_an_omniglot_run_compares_with_the_grey_images_the_file_holds(tmp_path, monkeypatch):
  """FID on a dataset without labels (no classifier distance): VAEPP's protocol compares with the
  whole training split (the images carved out for validation rejoined) and the test images once,
  all as grey levels though the run trains and is tested on binarized images. Checked against the
  Inception statistics of the images the file was written from. Random Inception weights stand in
  for pytorch-fid's file (tests/evaluation/fid_test.py checks the network against pytorch-fid's)."""
  manual = tmp_path / 'manual'
  manual.mkdir()
  sizes = {'train': 8, 'test': 4}  # Few images: each costs an Inception forward.
  monkeypatch.setattr(burda_omniglot.BurdaOmniglot, 'EXPECTED_SIZES', sizes)
  images = _write_chardata(str(manual / 'chardata.mat'), sizes)
  config = helpers.tiny_config()
  config.data.update(_config(tmp_path, manual, validation_size=4))
  config.train.update(num_steps=2, checkpoint_every_steps=2, batch_size=4)
  config.eval.num_samples = 2
  workdir = str(tmp_path / 'run')
  trainer.train_and_evaluate(config, workdir)
  weights = helpers.random_inception_weights(str(tmp_path))
  with pytest.raises(ValueError, match='does not start with 6726825d'):
    fid.load_params(weights)
  monkeypatch.setattr(fid, 'FID_WEIGHTS_SHA256_PREFIX', data.file_sha256(weights)[:8])
  folder = str(tmp_path / 'statistics')
  quality = report.sample_quality(workdir, folder, fid_weights=weights, protocol='vaepp',
                                    num_images=4)
  params, features = fid.load_params(weights), fid.features_fn()
  statistics = lambda x: frechet.gaussian_statistics(
      features(params, x[..., None].astype(np.float32)))
  floor = frechet.frechet_distance(*statistics(images['test']), *statistics(images['train']))
  # uint8 images (colour splits stay uint8 to save memory) are read as k / 255 by the features and
  # by the reconstructions.
  grey = np.round(images['test'][..., None] * 255).astype(np.uint8)
  as_float = grey.astype(np.float32) / 255
  np.testing.assert_array_equal(features(params, grey), features(params, as_float))
  run_config = checkpoints.load_config(workdir)
  model = models.create(run_config.model, (28, 28, 1))
  variables, _ = checkpoints.restore_variables(workdir, run_config, model, (28, 28, 1), 'auto')
  reconstruct = lambda x: report._generated(  # pylint: disable=protected-access
      model, variables, 'reconstructions', 4, jax.random.key(0), x)
  np.testing.assert_array_equal(reconstruct(grey), reconstruct(as_float))
  assert quality['reference_split'] == 'train' and quality['num_reference'] == 8
  assert quality['num_data'] == 4  # All the test images, once.
  assert quality['fid_data'] == pytest.approx(floor, rel=1e-5) and floor > 0
  kinds = {k for k in quality if k.startswith('fid_') and k != 'fid_reference_cache'}
  assert kinds == {'fid_samples', 'fid_reconstructions', 'fid_data'}
  assert all(np.isfinite(quality[k]) and quality[k] > 0 for k in kinds)
  assert not any(k.startswith('cfd') for k in quality)
  assert os.path.exists(quality['fid_reference_cache'])


def test_omniglot_without_manual_dir_says_where_to_get_the_file(tmp_path):
  with pytest.raises(data.DataError, match='(?s)cannot download it: set data.manual_dir.*chardata.mat'):
    data.load(_config(tmp_path, ''))


def test_cifar10_and_celeb_a_give_colour_images_in_unit_range(tmp_path):
  with helpers.mock_tfds(24):
    cifar = data.load(_config(tmp_path, '', dataset='cifar10', validation_size=4))
    celeb = data.load(_config(tmp_path, '', dataset='celeb_a'))
  assert cifar.train.shape == (20, 32, 32, 3) and cifar.validation.shape == (4, 32, 32, 3)
  assert cifar.test.shape == (24, 32, 32, 3) and cifar.train.dtype == np.uint8
  assert celeb.train.shape == (24, 64, 64, 3)  # 218x178 -> center 140x140 -> 64x64.
  batch = next(data.train_batches(cifar.train, 8, seed=0))
  assert batch.dtype == np.float32 and 0.0 <= batch.min() and batch.max() <= 1.0
  _, batches = data.eval_batches(celeb.test, 8)
  x, _ = next(batches)
  np.testing.assert_allclose(x, celeb.test[:8] / 255.0, rtol=1e-6)


def test_crop_and_resize_averages_the_central_square():
  image = np.zeros((218, 178, 3), np.uint8)
  image[39:179, 19:159] = 200  # Exactly the central 140x140 square.
  out = data._crop_and_resize(image, 140, 64).numpy()
  assert out.shape == (64, 64, 3) and np.all(out == 200)


def test_training_a_bernoulli_vae_on_colour_images_is_refused(tmp_path):
  config = helpers.tiny_config()
  config.data.dataset = 'cifar10'
  with pytest.raises(ValueError, match='data.dataset=cifar10 holds colour images.*binarized_mnist'):
    trainer.train_and_evaluate(config, str(tmp_path))
  # Grey levels or colour in [0, 1] (data.binarize=False) pass, as Dai & Wipf's CIFAR-10 entries:
  from experiments.configs import dai2019  # pylint: disable=g-import-not-at-top
  data.require_binary(dai2019.get_config('two_stage,cifar10').data, 'the two-stage VAE')


def test_the_128_crop_of_dai_and_wipfs_code_is_the_central_square_they_index():
  image = np.zeros((218, 178, 3), np.uint8)
  image[45:173, 25:153] = 200  # Their code's img[45:173, 25:153].
  out = data._crop_and_resize(image, 128, 64).numpy()
  assert out.shape == (64, 64, 3) and np.all(out == 200)
  with pytest.raises(ValueError, match='data.celeb_a_crop must be 140 .* or 128'):
    data.validate(ml_collections.ConfigDict(dict(dataset='celeb_a', celeb_a_crop=100)))


def test_data_celeb_a_crop_reaches_the_pipeline(tmp_path):
  crops = []
  real = data._crop_and_resize
  with helpers.mock_tfds(4), mock.patch.object(
      data, '_crop_and_resize', lambda image, crop, size: crops.append(crop) or real(image, crop,
                                                                                    size)):
    celeb = data.load(_config(tmp_path, '', dataset='celeb_a', celeb_a_crop=128))
  assert celeb.train.shape == (4, 64, 64, 3) and set(crops) == {128}
