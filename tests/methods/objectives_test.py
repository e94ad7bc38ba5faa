"""The training objective's terms: the closed-form KL, gamma's optimum and their settings."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.optimize
import scipy.stats

import helpers
from vaeprior_jax import likelihoods
from vaeprior_jax import methods
from vaeprior_jax.methods import objectives


def test_closed_form_kl_matches_numerical_integration():
  """KL(N(m, s^2) || N(0, 1)) per dimension by quadrature of q log(q / p), summed over dimensions."""
  mean = np.array([[0.0, 1.5, -0.7], [2.0, -0.1, 0.3]])
  log_std = np.array([[0.0, -1.2, 0.4], [-0.3, 0.8, -2.0]])
  expected = np.zeros(2)
  for i in range(2):
    for m, s in zip(mean[i], np.exp(log_std[i])):
      q = scipy.stats.norm(m, s)
      expected[i] += scipy.integrate.quad(lambda z: q.pdf(z) * (q.logpdf(z) - scipy.stats.norm.logpdf(z)),
                                          m - 12 * s, m + 12 * s, epsabs=1e-12)[0]
  kl = objectives.gaussian_kl_to_standard(jnp.asarray(mean, jnp.float32),
                                          jnp.asarray(log_std, jnp.float32))
  np.testing.assert_allclose(kl, expected, rtol=1e-5)


def test_the_closed_form_is_the_mean_of_the_one_sample_estimates():
  """training_loss with kl_estimate=sample, averaged over draws of z, converges to the closed form."""
  rng = np.random.default_rng(0)
  mean = jnp.asarray(rng.normal(size=(4, 5)), jnp.float32)
  log_std = jnp.asarray(rng.normal(scale=0.5, size=(4, 5)), jnp.float32)
  eps = jax.random.normal(jax.random.key(0), (20000, 4, 5))
  z = mean + jnp.exp(log_std) * eps
  log_q = jnp.sum(jax.scipy.stats.norm.logpdf(z, mean, jnp.exp(log_std)), -1)
  log_p = jnp.sum(jax.scipy.stats.norm.logpdf(z), -1)
  terms = lambda i: {'log_px_z': jnp.zeros(4), 'log_qz': log_q[i], 'log_pz': log_p[i],
                     'posterior_mean': mean, 'posterior_log_std': log_std}
  sampled = float(jnp.mean(log_q - log_p))  # The batch mean of 20,000 one-sample estimates.
  one = objectives.training_loss(terms(0), 1.0, jnp.zeros(()), 0.0, False)[1]['kl']
  np.testing.assert_allclose(one, jnp.mean(log_q[0] - log_p[0]), rtol=1e-6)
  _, metrics = objectives.training_loss(terms(0), 1.0, jnp.zeros(()), 0.0, False, 'closed_form')
  sd = float(jnp.std(jnp.mean(log_q - log_p, -1))) / np.sqrt(20000)
  assert abs(float(metrics['kl']) - sampled) < 4 * sd
  np.testing.assert_allclose(metrics['kl'], jnp.mean(objectives.gaussian_kl_to_standard(mean, log_std)))
  with pytest.raises(ValueError, match="Unknown KL estimate 'exact'; allowed: sample, closed_form"):
    objectives.training_loss(terms(0), 1.0, 0.0, 0.0, False, 'exact')


def test_gaussian_squared_error_is_recovered_from_the_log_prob():
  rng = np.random.default_rng(1)
  x = rng.uniform(size=(3, 6, 6, 1)).astype(np.float32)
  out = rng.normal(size=x.shape).astype(np.float32)
  for log_gamma in (0.0, -2.5, 1.0):
    lik = likelihoods.Gaussian(log_std=log_gamma, mean_activation='sigmoid')
    log_prob = lik.apply({}, x, out, method='log_prob')
    recovered = likelihoods.Gaussian.squared_error(log_prob, jnp.float32(log_gamma), 36)
    direct = np.sum(np.square(x - jax.nn.sigmoid(out)), axis=(1, 2, 3))
    np.testing.assert_allclose(recovered, direct, rtol=2e-4)


def test_sqrt_mse_is_gammas_optimum_with_the_decoder_fixed():
  """gamma_metrics' sqrt_mse maximises the batch's mean log N(x; mean, gamma^2) over gamma (found
  here by a scalar optimiser), and is reported only where gamma is a learned parameter."""
  rng = np.random.default_rng(2)
  x = rng.uniform(size=(16, 4, 4, 1)).astype(np.float32)
  mean = np.clip(x + 0.05 * rng.normal(size=x.shape), 0, 1).astype(np.float32)
  log_prob = lambda g: likelihoods.Gaussian(log_std=float(g)).apply({}, x, mean, method='log_prob')
  best = scipy.optimize.minimize_scalar(lambda g: -float(jnp.mean(log_prob(g))), bounds=(-8, 2),
                                        method='bounded', options={'xatol': 1e-7}).x
  params = {'likelihood': {'log_gamma': jnp.float32(0.3)}}
  metrics = objectives.gamma_metrics(params, log_prob(0.3), x.shape[1:], '_z')
  direct = np.sqrt(np.mean(np.square(x.astype(np.float64) - mean)))
  np.testing.assert_allclose(metrics['sqrt_mse_z'], direct, rtol=1e-4)
  np.testing.assert_allclose(metrics['sqrt_mse_z'], np.exp(best), rtol=1e-3)  # (float32's flat top)
  np.testing.assert_allclose(metrics['gamma_z'], np.exp(0.3), rtol=1e-6)
  assert objectives.gamma_metrics({'decoder': {}}, log_prob(0.3), x.shape[1:]) == {}


@pytest.mark.parametrize('change, message', [
    (dict(kl_estimate='exact'), "train.kl_estimate must be sample or closed_form, got 'exact'"),
    (dict(kl_estimate='closed_form', method='vaepp'),
     'train.kl_estimate=closed_form is not an option of train.method=vaepp'),
    (dict(kl_estimate='closed_form', prior='realnvp'),
     "needs a one-level model with model.posterior=gaussian and model.prior=standard; got "
     "model.net=dense, model.posterior=gaussian, model.prior=realnvp"),
    (dict(kl_estimate='closed_form', net='hvae'), 'got model.net=hvae'),
])
def test_bad_kl_settings_are_one_line_errors(change, message):
  config = helpers.tiny_config(prior='standard')
  for key, value in change.items():
    section = 'train' if key in ('kl_estimate', 'method') else 'model'
    config[section][key] = value
  if change.get('method') == 'vaepp':
    config.model.prior = 'pullback'
  with pytest.raises(ValueError, match=message.replace('(', r'\(').replace(')', r'\)')):
    methods.validate(config)


def test_closed_form_kl_trains_and_logs_gamma_beside_its_optimum(tmp_path):
  from vaeprior_jax.train import trainer  # pylint: disable=g-import-not-at-top
  config = helpers.tiny_config(prior='standard', likelihood='gaussian', mean_activation='sigmoid')
  config.data.dataset, config.data.binarize = 'mnist', False
  config.data.hold_out_validation = False
  config.train.kl_estimate = 'closed_form'
  config.train.num_steps = 3
  with helpers.mock_tfds(64):
    last = trainer.train_and_evaluate(config, str(tmp_path))
  assert np.isfinite(last['kl']) and last['kl'] >= 0
  assert 0 < last['sqrt_mse'] < 1 and np.isfinite(last['gamma'])
