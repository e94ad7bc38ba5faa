"""The analyses of App. B.4 and Figs. 1-3 against brute force and closed forms."""

import json
import os
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import helpers
from vaeprior_jax.evaluation import analysis
from vaeprior_jax import models
from vaeprior_jax import sharding
from vaeprior_jax.train import trainer

SHAPE = (28, 28, 1)


def test_closest_pairs_match_brute_force():
  means = np.random.default_rng(0).normal(size=(301, 5)).astype(np.float32)
  nearest, dist = analysis.closest_pairs(means, block_size=64)
  d = np.linalg.norm(means[:, None] - means[None], axis=-1)
  np.fill_diagonal(d, np.inf)
  np.testing.assert_array_equal(nearest, np.argmin(d, axis=1))
  np.testing.assert_allclose(dist, np.min(d, axis=1), rtol=1e-6)
  with pytest.raises(ValueError, match='at least 2 points'):
    analysis.closest_pairs(means[:1])


def test_normalized_distance_is_distance_over_std():
  # Isotropic posteriors of std 0.5 at distance 2: "distance / std" = 4.
  np.testing.assert_allclose(analysis.normalized_distances(np.array([2.0]), np.array([0.5]),
                                                           np.array([0.5])), [4.0])
  np.testing.assert_allclose(analysis.normalized_distances(np.array([3.0]), np.array([1.0]),
                                                           np.array([2.0])), [2.0])


def test_nearest_images_match_brute_force():
  rng = np.random.default_rng(1)
  train = rng.random((50, 4, 4, 1)).astype(np.float32)
  samples = rng.random((7, 4, 4, 1)).astype(np.float32)
  d = np.sum((samples.reshape(7, 1, -1) - train.reshape(1, 50, -1)) ** 2, axis=-1)
  np.testing.assert_array_equal(analysis.nearest_images(samples, train, block_size=16),
                                np.argmin(d, axis=1))


def _model_and_params(**model):
  config = helpers.tiny_config(**model)
  m = models.create(config.model, SHAPE)
  x = np.asarray(jax.random.uniform(jax.random.key(0), (16,) + SHAPE) > 0.5, np.float32)
  params = m.init({'params': jax.random.key(1)}, x, jax.random.key(2))['params']
  # Spread the posterior stds so that directions matter.
  heads = params['encoder']['heads']['log_std']
  heads['bias'] = jnp.linspace(-1.0, 0.5, heads['bias'].shape[0])
  return m, params, x


def test_monte_carlo_moments_agree_with_the_exact_gaussian_ones():
  model, params, x = _model_and_params(prior='realnvp')
  mesh = sharding.make_mesh()
  directions = np.random.default_rng(2).normal(size=(16, 4)).astype(np.float32)
  key = jax.random.key(3)
  means, stds = analysis.posterior_moments(model, params, x, key, mesh, batch_size=8)
  exact_std = analysis.std_along(model, params, x, directions, key, mesh, batch_size=8)
  mean, log_std = model.apply({'params': params}, x, method=lambda m, x_: m.encoder(x_))
  np.testing.assert_allclose(means, mean, atol=1e-6)
  unit = directions / np.linalg.norm(directions, axis=1, keepdims=True)
  np.testing.assert_allclose(exact_std, np.sqrt(np.sum(np.exp(2 * log_std) * unit ** 2, 1)),
                             rtol=1e-5)
  with mock.patch.object(analysis, '_is_gaussian', lambda m: False):  # The RealNVP-posterior path.
    mc_means, mc_stds = analysis.posterior_moments(model, params, x, key, mesh, 8, 4000)
    mc_std = analysis.std_along(model, params, x, directions, key, mesh, 8, 4000)
  np.testing.assert_allclose(mc_stds, stds, rtol=0.08)
  np.testing.assert_allclose(mc_std, exact_std, rtol=0.08)
  np.testing.assert_allclose(mc_means, means, atol=4 * np.max(stds) / np.sqrt(4000) * 3)


def test_interpolations_start_and_end_at_the_posterior_means():
  model, params, x = _model_and_params(prior='realnvp')
  rows, log_pz = analysis.interpolations(model, params, x[:3], x[3:6], 5, jax.random.key(0))
  assert rows.shape == (3, 7) + SHAPE and log_pz.shape == (3, 5)
  np.testing.assert_array_equal(rows[:, 0], x[:3])
  np.testing.assert_array_equal(rows[:, -1], x[3:6])
  mu_a, _ = model.apply({'params': params}, x[:3], method=lambda m, x_: m.encoder(x_))
  np.testing.assert_allclose(log_pz[:, 0], model.apply({'params': params}, mu_a,
                                                       method=lambda m, z: m.prior.log_prob(z)),
                             rtol=1e-5)
  np.testing.assert_allclose(rows[:, 1], jax.nn.sigmoid(model.apply(
      {'params': params}, mu_a, method=models.VAE.decode)), rtol=1e-5)


def test_analyze_workdir_writes_the_tables_and_figures(tmp_path):
  workdir = str(tmp_path)
  config = helpers.tiny_config(prior='realnvp')
  with helpers.mock_binarized_mnist(64):
    trainer.train_and_evaluate(config, workdir)
    result = analysis.analyze_workdir(workdir, num_samples=8, num_pairs=2, num_steps=3)
  for name in ('analysis.json', 'figure1_samples.png', 'figure2_interpolations.png',
               'figure3_histograms.png'):
    assert os.path.getsize(os.path.join(workdir, 'analysis', name)) > 0, name
  with open(os.path.join(workdir, 'analysis', 'analysis.json')) as f:
    written = json.load(f)
  pairs = written['closest_pairs']
  assert pairs['num_examples'] == 64
  assert sum(pairs['posterior_std']['histogram']['counts']) == 64 * 4  # Every dimension of every x.
  assert sum(pairs['normalized_distance']['histogram']['counts']) == 64
  assert set(written['metrics']) >= {'nll', 'elbo', 'reconstruction', 'kl', 'kl_z_given_x',
                                     'active_units'}
  assert np.isfinite(written['metrics']['nll']) and len(written['interpolations']['log_pz']) == 2
  assert result['metrics'] == written['metrics']


def test_coinciding_means_have_normalized_distance_zero():
  np.testing.assert_array_equal(
      analysis.normalized_distances(np.array([0.0, 1.0]), np.array([0.0, 1.0]),
                                    np.array([0.0, 1.0])), [0.0, 1.0])


def test_figures_are_written_without_touching_the_callers_matplotlib_backend(tmp_path):
  """The library draws on its own Figure objects: a notebook's inline backend (here 'svg', as a
  stand-in) stays what it was, and the PNGs are written."""
  matplotlib = pytest.importorskip('matplotlib')
  before = matplotlib.get_backend()
  matplotlib.use('svg')
  try:
    rng = np.random.default_rng(0)
    analysis.plot_interpolations(rng.uniform(size=(2, 5, 28, 28, 1)), rng.normal(size=(2, 3)),
                                 str(tmp_path / 'interpolations.png'))
    runs = {name: {k: rng.uniform(0.1, 1, size=50) for k in
                   ('stds', 'distances', 'normalized_distances')} for name in ('a', 'b')}
    analysis.plot_histograms(runs, str(tmp_path / 'histograms.png'))
    spectra = {k: list(rng.uniform(size=4)) for k in ('q_z', 'q_u', 'standard_normal')}
    analysis._plot_two_stage({'gamma': [[1, 1.0], [2, 0.5]], 'gamma_z': [], 'spectra': spectra},
                             str(tmp_path))
    assert matplotlib.get_backend() == 'svg'
  finally:
    matplotlib.use(before)
  for name in ('interpolations.png', 'histograms.png', 'figure1_gamma.png', 'figure1_spectra.png'):
    with open(tmp_path / name, 'rb') as f:
      assert f.read(8) == b'\x89PNG\r\n\x1a\n', name
