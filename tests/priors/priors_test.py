"""Priors and posteriors: densities integrate to 1 on a grid; samples follow the density."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vaeprior_jax import distributions
from vaeprior_jax import flows
from vaeprior_jax import posteriors
from vaeprior_jax import priors

GRID = np.linspace(-10.0, 10.0, 801)
CELL = (GRID[1] - GRID[0])**2
POINTS = jnp.asarray(np.stack(np.meshgrid(GRID, GRID), -1).reshape(-1, 2), jnp.float32)


def _trained_like_realnvp_prior(seed=0):
  """A 2-D RealNVP prior initialised on a skewed batch, then perturbed away from its init."""
  prior = priors.RealNVPPrior(latent_dim=2, num_blocks=4, hidden_units=16)
  z = jax.random.normal(jax.random.key(seed), (512, 2))
  z = jnp.stack([z[:, 0] * 1.5 + 1.0, z[:, 1] * 0.5 + 0.3 * z[:, 0] ** 2], -1)
  variables = prior.init(jax.random.key(1), z, method=prior.log_prob)
  leaves, treedef = jax.tree.flatten(variables)
  keys = jax.random.split(jax.random.key(2), len(leaves))
  variables = jax.tree.unflatten(
      treedef, [p + 0.1 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])
  return prior, variables


def test_realnvp_prior_integrates_to_one():
  prior, variables = _trained_like_realnvp_prior()
  density = jnp.exp(prior.apply(variables, POINTS, method=prior.log_prob))
  # Almost all samples lie in the grid, so the integral over the grid must be ~1.
  samples = prior.apply(variables, jax.random.key(3), 20000, method=prior.sample)
  inside = float(jnp.mean(jnp.all(jnp.abs(samples) < 10, axis=-1)))
  assert inside > 0.999
  np.testing.assert_allclose(float(jnp.sum(density) * CELL), inside, atol=2e-3)
  assert float(jnp.max(density)) < 2.0  # Not a degenerate spike.


def test_realnvp_prior_samples_follow_its_density():
  """Moments of samples (drawn through the inverse flow) = moments of the density (forward flow)."""
  prior, variables = _trained_like_realnvp_prior()
  density = np.asarray(jnp.exp(prior.apply(variables, POINTS, method=prior.log_prob))) * CELL
  density /= density.sum()
  grid_mean = density @ np.asarray(POINTS)
  grid_second = (np.asarray(POINTS) * density[:, None]).T @ np.asarray(POINTS)
  samples = np.asarray(prior.apply(variables, jax.random.key(4), 50000, method=prior.sample))
  np.testing.assert_allclose(samples.mean(0), grid_mean, atol=0.03)
  np.testing.assert_allclose(samples.T @ samples / len(samples), grid_second, atol=0.06)
  # And the log-density on the samples equals the density's expected log (up to MC error).
  log_p = np.asarray(prior.apply(variables, jnp.asarray(samples), method=prior.log_prob))
  np.testing.assert_allclose(log_p.mean(), np.sum(density * np.log(density / CELL + 1e-30)),
                             atol=0.03)


def test_standard_prior():
  prior = priors.StandardNormalPrior(latent_dim=2)
  density = jnp.exp(prior.apply({}, POINTS, method=prior.log_prob))
  np.testing.assert_allclose(float(jnp.sum(density) * CELL), 1.0, atol=1e-4)
  samples = prior.apply({}, jax.random.key(0), 10000, method=prior.sample)
  assert samples.shape == (10000, 2)
  np.testing.assert_allclose(jnp.cov(samples.T), np.eye(2), atol=0.05)


def test_realnvp_posterior_density_integrates_to_one():
  posterior = posteriors.RealNVPPosterior(num_blocks=3, hidden_units=16)
  mean, log_std = jnp.array([[0.5, -0.3]]), jnp.array([[-0.2, 0.1]])
  variables = posterior.init(jax.random.key(0), jnp.tile(mean, (256, 1)),
                             jnp.tile(log_std, (256, 1)), jax.random.key(1),
                             method=posterior.sample_and_log_prob)
  # log q(z) at z = f(w) from the sampler, and on a grid through the inverse flow.
  flow = flows.RealNVP(num_blocks=3, hidden_units=16)  # The posterior's flow, standalone.
  def log_q(z):
    w, log_det_inv = flow.apply({'params': variables['params']['flow']}, z,
                                method=flow.inverse_and_log_det)
    return distributions.diag_normal_log_prob(w, mean, log_std) + log_det_inv
  density = jnp.exp(log_q(POINTS))
  np.testing.assert_allclose(float(jnp.sum(density) * CELL), 1.0, atol=2e-3)
  z, log_q_sampled = posterior.apply(variables, mean, log_std, jax.random.key(2),
                                     method=posterior.sample_and_log_prob)
  np.testing.assert_allclose(log_q_sampled, log_q(z), atol=1e-4)


def test_posterior_means():
  mean, log_std = jnp.array([[0.5, -0.3]]), jnp.array([[-1.0, -0.5]])
  g = posteriors.GaussianPosterior()
  np.testing.assert_array_equal(g.apply({}, mean, log_std, jax.random.key(0), 10, method=g.mean),
                                mean)
  p = posteriors.RealNVPPosterior(num_blocks=2, hidden_units=8)
  v = p.init(jax.random.key(0), jnp.tile(mean, (64, 1)), jnp.tile(log_std, (64, 1)),
             jax.random.key(1), method=p.sample_and_log_prob)
  mc = p.apply(v, mean, log_std, jax.random.key(2), 20000, method=p.mean)
  z, _ = jax.vmap(lambda k: p.apply(v, mean, log_std, k, method=p.sample_and_log_prob))(
      jax.random.split(jax.random.key(3), 20000))
  np.testing.assert_allclose(mc, jnp.mean(z, 0), atol=0.02)


def test_bad_names_and_shapes_are_rejected():
  with pytest.raises(ValueError, match=r"Unknown model.prior 'vamp'.*standard, realnvp"):
    priors.create('vamp', 2, 1)
  with pytest.raises(ValueError, match=r"Unknown model.posterior 'iaf'.*gaussian, realnvp"):
    posteriors.create('iaf', 1)
  with pytest.raises(ValueError, match=r'\[\.\.\., 3\].*\(4, 2\)'):
    priors.StandardNormalPrior(3).apply({}, jnp.zeros((4, 2)), method='log_prob')
