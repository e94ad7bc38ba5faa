"""The MoG prior and the VampPrior: densities integrate to 1, samples follow them, the VampPrior is
the mean of its components, and gradients reach the pseudo-inputs."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import scipy.stats

import helpers
from vaeprior_jax import methods
from vaeprior_jax import models
from vaeprior_jax import priors
from vaeprior_jax import sharding
from vaeprior_jax.train import trainer

GRID = np.linspace(-8.0, 8.0, 641)
CELL = (GRID[1] - GRID[0]) ** 2
POINTS = jnp.asarray(np.stack(np.meshgrid(GRID, GRID), -1).reshape(-1, 2), jnp.float32)


def _moments_match(samples, log_density):
  """Mean and second moment of samples vs. of the density on the grid."""
  p = np.asarray(jnp.exp(log_density), np.float64) * CELL
  points = np.asarray(POINTS, np.float64)
  np.testing.assert_allclose(samples.mean(0), p @ points / p.sum(), atol=0.04)
  np.testing.assert_allclose(samples.T @ samples / len(samples),
                             (points * p[:, None]).T @ points / p.sum(), atol=0.08)


def test_mog_prior_integrates_to_one_and_its_samples_follow_it():
  prior = priors.MixtureOfGaussiansPrior(latent_dim=2, num_components=5)
  variables = prior.init(jax.random.key(0), POINTS[:2], method=prior.log_prob)
  variables = {'params': {'means': variables['params']['means'] * 2.0,
                          'log_stds': jnp.linspace(-1.0, 0.3, 10).reshape(5, 2)}}
  log_p = prior.apply(variables, POINTS, method=prior.log_prob)
  np.testing.assert_allclose(float(jnp.sum(jnp.exp(log_p)) * CELL), 1.0, atol=2e-3)
  samples = np.asarray(prior.apply(variables, jax.random.key(1), 40000, method=prior.sample))
  _moments_match(samples, log_p)


def _vamp_vae(prior='vampprior', latent_dim=2, num_components=7, shape=(8, 8, 1)):
  config = ml_collections.ConfigDict(dict(
      net='dense', prior=prior, posterior='gaussian', latent_dim=latent_dim, flow_depth=1,
      num_components=num_components))
  model = models.create(config, shape)
  x = jnp.asarray(np.random.default_rng(0).random((4,) + shape) > 0.5, jnp.float32)
  params = jax.jit(model.init)(jax.random.key(0), x, jax.random.key(1))['params']
  # Spread the components: larger encoder heads, so they do not all sit at the origin.
  heads = params['encoder']['heads']
  heads['mean']['kernel'] = heads['mean']['kernel'] * 20.0
  heads['log_std']['bias'] = heads['log_std']['bias'] - 0.7
  return model, params, x


def test_vampprior_is_the_mean_of_its_component_posteriors():
  model, params, _ = _vamp_vae(latent_dim=3)
  u = model.apply({'params': params}, method=lambda m: m.prior.pseudo_inputs())
  assert u.shape == (7, 8, 8, 1) and float(u.min()) >= 0.0 and float(u.max()) <= 1.0
  means, log_stds = (np.asarray(a, np.float64) for a in
                     model.apply({'params': params}, u, method=lambda m, x: m.encoder(x)))
  z = np.random.default_rng(1).normal(size=(5, 3)) * 2.0
  naive = np.log(np.mean([scipy.stats.multivariate_normal(means[k], np.diag(np.exp(2 * log_stds[k])))
                          .pdf(z) for k in range(7)], axis=0))
  got = model.apply({'params': params}, jnp.asarray(z, jnp.float32), method=models.VAE.prior_log_prob)
  np.testing.assert_allclose(got, naive, rtol=1e-5, atol=1e-5)


def test_vampprior_integrates_to_one_and_its_samples_follow_it():
  model, params, _ = _vamp_vae()
  log_p = jax.jit(lambda p: model.apply({'params': p}, POINTS, method=models.VAE.prior_log_prob))(
      params)
  samples = np.asarray(model.apply({'params': params}, jax.random.key(2), 40000,
                                   method=models.VAE.sample_prior))
  # The integral over the grid is the mass inside it, which the samples measure independently.
  inside = np.all(np.abs(samples) < GRID[-1], axis=1)
  assert inside.mean() > 0.98
  np.testing.assert_allclose(float(jnp.sum(jnp.exp(log_p)) * CELL), inside.mean(), atol=2e-3)
  _moments_match(samples[inside], log_p)


@pytest.mark.parametrize('prior, reaches', [('vampprior', True), ('vampprior_data', False)])
def test_gradients_reach_trainable_pseudo_inputs_only(prior, reaches):
  model, params, x = _vamp_vae(prior)
  grads = jax.grad(lambda p: -jnp.mean(model.apply({'params': p}, x, jax.random.key(3),
                                                   method=model.elbo)))(params)
  norm = float(jnp.sum(jnp.abs(grads['prior']['pseudo_inputs'])))
  assert (norm > 0) == reaches


def test_vampprior_needs_a_gaussian_posterior():
  config = helpers.tiny_config(prior='vampprior', posterior='realnvp')
  with pytest.raises(ValueError, match='needs model.posterior=gaussian'):
    models.validate(config.model)


def test_vampprior_data_keeps_its_training_images_through_training():
  config = helpers.tiny_config(prior='vampprior_data', num_components=5)
  model, shape = models.create(config.model, (8, 8, 1)), (8, 8, 1)
  train = (np.random.default_rng(0).random((20,) + shape) > 0.5).astype(np.float32)
  optimizer = methods.joint.make_optimizer(config.train, steps_per_epoch=2)
  mesh = sharding.make_mesh()
  state = jax.jit(lambda b: trainer.create_train_state(model, optimizer, b, jax.random.key(0)),
                  out_shardings=sharding.replicated(mesh))(train[:8])
  state = trainer._pseudo_inputs_from_data(state, train, config, mesh)  # pylint: disable=protected-access
  rows = np.sort(np.random.default_rng(config.seed).choice(len(train), 5, replace=False))
  np.testing.assert_array_equal(state['params']['prior']['pseudo_inputs'], train[rows])
  step = trainer.compile_train_step(
      trainer.make_train_step(model, optimizer, config.train, steps_per_epoch=2), mesh)
  for i in range(2):
    state, _ = step(state, sharding.shard_batch(train[8 * i:8 * i + 8], mesh), jax.random.key(1))
  np.testing.assert_array_equal(state['params']['prior']['pseudo_inputs'], train[rows])
  config.model.num_components = 21
  with pytest.raises(ValueError, match='num_components 21 exceeds the 20 training images'):
    trainer._pseudo_inputs_from_data(state, train, config, mesh)  # pylint: disable=protected-access
