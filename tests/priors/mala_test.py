"""MALA (`vaeprior_jax.priors.pullback.mala`) against targets whose moments are known in closed form."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vaeprior_jax import distributions
from vaeprior_jax.priors.pullback import mala

MEAN = np.array([1.0, -2.0], np.float32)
COV = np.array([[1.0, 0.6], [0.6, 0.8]], np.float32)
PRECISION = np.linalg.inv(COV)


def _gaussian_log_prob(z):
  d = z - MEAN
  return -0.5 * d @ PRECISION @ d


def _ula_stationary_cov(step):
  """The unadjusted chain z' = z + a grad + sqrt(2a) eps on N(m, C) is linear: its stationary
  covariance S solves S = A S A^T + 2a I with A = I - a C^-1 (a discrete Lyapunov equation)."""
  a_mat = np.eye(2) - step * PRECISION.astype(np.float64)
  # vec(S) = (I - A (x) A)^-1 vec(2a I).
  lhs = np.eye(4) - np.kron(a_mat, a_mat)
  return np.linalg.solve(lhs, (2 * step * np.eye(2)).reshape(-1)).reshape(2, 2)


def test_chains_started_from_the_target_keep_its_moments_and_the_unadjusted_chain_does_not():
  # A step this large makes the unadjusted Langevin chain visibly biased, so the test sees whether
  # the Metropolis-Hastings correction is right.
  step, num_chains = 0.4, 4000
  z0 = jax.random.multivariate_normal(jax.random.key(0), MEAN, COV, (num_chains,))
  out = mala.sample(_gaussian_log_prob, z0, jax.random.key(1), num_steps=60, step_size=step)
  z = np.asarray(out.samples, np.float64)
  assert out.samples.shape == (num_chains, 2)
  np.testing.assert_allclose(z.mean(0), MEAN, atol=0.06)
  np.testing.assert_allclose(np.cov(z.T), COV, atol=0.08)
  assert 0.3 < float(jnp.mean(out.acceptance_rate)) < 0.99
  np.testing.assert_allclose(out.log_prob, jax.vmap(_gaussian_log_prob)(out.samples), rtol=1e-5,
                             atol=1e-5)

  ula = mala.sample(_gaussian_log_prob, z0, jax.random.key(1), num_steps=60, step_size=step,
                    metropolis=False)
  expected = _ula_stationary_cov(step)
  assert np.max(np.abs(expected - COV)) > 0.3  # The bias the test must be able to see.
  np.testing.assert_allclose(np.cov(np.asarray(ula.samples, np.float64).T), expected, atol=0.15)
  np.testing.assert_array_equal(ula.acceptance_rate, 1.0)


def _mixture_log_prob(z):
  means = jnp.array([[-1.5, 0.0], [1.5, 0.0]])
  log_stds = jnp.zeros((2, 2))
  weights = jnp.log(jnp.array([0.3, 0.7]))
  per = jax.vmap(lambda m, s: distributions.diag_normal_log_prob(z, m, s))(means, log_stds)
  return jax.nn.logsumexp(per + weights)


def test_chains_started_far_away_reach_a_two_component_mixture_and_adaptation_hits_its_target():
  num_chains = 3000
  z0 = jnp.tile(jnp.array([[4.0, 4.0]]), (num_chains, 1))
  out = mala.sample(_mixture_log_prob, z0, jax.random.key(2), num_steps=400, step_size=0.05,
                    adapt_steps=300, trace_every=100)
  z = np.asarray(out.samples, np.float64)
  # Closed form: mean 0.3 (-1.5) + 0.7 (1.5) = 0.6 in x; Var x = 1 + E[m^2] - E[m]^2 = 1 + 2.25 - 0.36.
  np.testing.assert_allclose(z.mean(0), [0.6, 0.0], atol=0.08)
  np.testing.assert_allclose(z.var(0), [1.0 + 2.25 - 0.36, 1.0], rtol=0.08)
  # P(x < 0) = 0.3 Phi(1.5) + 0.7 Phi(-1.5).
  np.testing.assert_allclose(np.mean(z[:, 0] < 0), 0.3 * 0.9331928 + 0.7 * 0.0668072, atol=0.03)
  rate = float(jnp.mean(out.acceptance_rate))
  assert abs(rate - mala.TARGET_ACCEPTANCE) < 0.12, rate
  assert float(out.step_size) > 0.05  # Adaptation grew the small initial step.
  assert out.trace.shape == (4, num_chains, 2)
  np.testing.assert_array_equal(out.trace[-1], out.samples)


@pytest.mark.parametrize('start', [1e-5, 1e3])
def test_adaptation_corrects_a_step_size_orders_of_magnitude_off_within_100_steps(start):
  """A 13-dimensional Gaussian (VAEPP's MNIST latent size) with scales from 0.05 to 0.5, chains
  started at exact draws: from a step 10^4 times too small (VAEPP's fixed 1e-5 is of that kind) or
  10^4 too large, 100 adaptation steps bring the acceptance rate of the fixed phase to the target,
  and the chains still have the target's moments."""
  d, num_chains = 13, 1000
  scales = jnp.linspace(0.05, 0.5, d)
  log_prob = lambda z: -0.5 * jnp.sum(jnp.square(z / scales))
  z0 = scales * jax.random.normal(jax.random.key(5), (num_chains, d))
  out = mala.sample(log_prob, z0, jax.random.key(6), num_steps=100, step_size=start,
                    adapt_steps=100)
  rate = float(jnp.mean(out.acceptance_rate))
  assert abs(rate - mala.TARGET_ACCEPTANCE) < 0.1, (rate, float(out.step_size))
  assert 1e-4 < float(out.step_size) < 1e-1
  np.testing.assert_allclose(np.std(np.asarray(out.samples), axis=0), scales, rtol=0.15)


def test_works_on_image_shaped_states_and_rejects_bad_arguments():
  log_prob = lambda x: -0.5 * jnp.sum(jnp.square(x))
  out = mala.sample(log_prob, jnp.zeros((5, 3, 3, 1)), jax.random.key(0), 3, 0.1)
  assert out.samples.shape == (5, 3, 3, 1) and out.acceptance_rate.shape == (5,)
  assert out.trace is None
  with pytest.raises(ValueError, match='step_size must be > 0, got 0'):
    mala.sample(log_prob, jnp.zeros((5, 2)), jax.random.key(0), 3, 0.0)
  with pytest.raises(ValueError, match='num_steps and adapt_steps must be >= 0'):
    mala.sample(log_prob, jnp.zeros((5, 2)), jax.random.key(0), -1, 0.1)
