"""The observation models p(x|z): densities against scipy, any event shape, the learned gamma's
optimum in closed form, and the choice by config."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.stats

import helpers
from vaeprior_jax import likelihoods
from vaeprior_jax import models


@pytest.mark.parametrize('event_shape', [(6,), (4, 3, 2)])
@pytest.mark.parametrize('learn_gamma', [False, True])
def test_gaussian_log_prob_matches_scipy(event_shape, learn_gamma):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(5,) + event_shape).astype(np.float32)
  out = rng.normal(size=(5,) + event_shape).astype(np.float32)
  lik = likelihoods.Gaussian(log_std=-0.7, learn_gamma=learn_gamma, event_ndims=len(event_shape))
  variables = lik.init(jax.random.key(0), x, out, method='log_prob')
  assert ('log_gamma' in variables.get('params', {})) == learn_gamma
  got = lik.apply(variables, x, out, method='log_prob')
  expected = scipy.stats.norm(out.astype(np.float64), np.exp(-0.7)).logpdf(x).reshape(5, -1).sum(1)
  np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_gaussian_sigmoid_mean_and_bernoulli_cross_entropy_on_vectors():
  rng = np.random.default_rng(1)
  x = rng.random((3, 7)).astype(np.float32)  # continuous targets in [0, 1]
  out = rng.normal(size=(3, 7)).astype(np.float32)
  p = 1.0 / (1.0 + np.exp(-out.astype(np.float64)))
  gauss = likelihoods.Gaussian(log_std=0.2, event_ndims=1, mean_activation='sigmoid')
  np.testing.assert_allclose(gauss.apply({}, x, out, method='log_prob'),
                             scipy.stats.norm(p, np.exp(0.2)).logpdf(x).sum(1), rtol=1e-5)
  np.testing.assert_allclose(gauss.apply({}, out, method='mean'), p, rtol=1e-6)
  bern = likelihoods.Bernoulli(event_ndims=1)
  cross_entropy = (x * np.log(p) + (1 - x) * np.log1p(-p)).sum(1)
  np.testing.assert_allclose(bern.apply({}, x, out, method='log_prob'), cross_entropy, rtol=1e-5)


def test_learned_gamma_reaches_the_residual_standard_deviation():
  """max over gamma of sum log N(x; m, gamma^2) is at gamma^2 = mean squared residual."""
  rng = np.random.default_rng(2)
  out = rng.normal(size=(256, 10)).astype(np.float32)
  x = out + 0.3 * rng.normal(size=out.shape).astype(np.float32)
  lik = likelihoods.Gaussian(log_std=0.0, learn_gamma=True, event_ndims=1)
  params = lik.init(jax.random.key(0), x, out, method='log_prob')['params']
  optimizer = optax.adam(0.05)
  state = optimizer.init(params)
  loss = lambda p: -jnp.mean(lik.apply({'params': p}, x, out, method='log_prob'))
  for _ in range(400):
    grads = jax.grad(loss)(params)
    updates, state = optimizer.update(grads, state)
    params = optax.apply_updates(params, updates)
  optimum = np.sqrt(np.mean(np.square(x.astype(np.float64) - out)))
  np.testing.assert_allclose(np.exp(float(params['log_gamma'])), optimum, rtol=1e-3)


def test_the_config_chooses_the_likelihood_and_gamma_is_a_parameter():
  config = helpers.tiny_config()
  x = np.asarray(jax.random.uniform(jax.random.key(0), (4, 28, 28, 1)), np.float32)
  for name, learned in (('bernoulli', False), ('gaussian', True)):
    config.model.likelihood = name
    model = models.create(config.model, (28, 28, 1))
    params = model.init(jax.random.key(1), x, jax.random.key(2))['params']
    assert ('likelihood' in params) == learned
    if learned:
      assert float(params['likelihood']['log_gamma']) == 0.0
      grads = jax.grad(lambda p: -model.apply({'params': p}, x, jax.random.key(3)).mean())(params)
      assert float(jnp.abs(grads['likelihood']['log_gamma'])) > 0
  config.model.likelihood = 'poisson'
  with pytest.raises(ValueError, match="Unknown model.likelihood 'poisson'; allowed: bernoulli, gaussian"):
    models.create(config.model, (28, 28, 1))


def _logistic_bin_masses(mean_u, log_scale):
  """float64 NumPy: P(k), k = 0..255, of a logistic(mean_u, exp(log_scale)) over VAEPP's bins in
  u = (k - 127.5) / 128 (width 2/256, the end bins open), by scipy's logistic CDF, differenced on the
  side of the tail the bin is in (so that tail masses keep their relative precision)."""
  u = (np.arange(256) - 127.5) / 128.0
  dist = scipy.stats.logistic(loc=mean_u, scale=np.exp(log_scale))
  lo, hi = u - 1 / 256, u + 1 / 256
  lo[0], hi[-1] = -np.inf, np.inf
  left = dist.cdf(hi) - dist.cdf(lo)
  right = dist.sf(lo) - dist.sf(hi)
  return np.where(u < mean_u, left, right)


@pytest.mark.parametrize('mean_u,log_scale', [(0.0, -3.0), (0.93, -5.0), (-0.999, -1.0),
                                              (0.3, 2.0), (0.01, -20.0), (0.5, -8.0)])
def test_discretized_logistic_matches_scipy_bins_and_sums_to_one(mean_u, log_scale):
  """Every pixel value's log-probability against scipy's logistic CDF over the bin (float64), for
  narrow, wide and clipped scales and means near the ends; the 256 masses sum to 1."""
  x = (np.arange(256, dtype=np.float32) / 255.0).reshape(1, 256, 1, 1)
  pre_mean = np.float32(np.arctanh(mean_u))
  out = np.concatenate([np.full_like(x, pre_mean), np.full_like(x, log_scale)], axis=-1)
  lik = likelihoods.DiscretizedLogistic(event_ndims=1)  # One pixel per event: [1, 256, 1] values.
  log_p = np.asarray(lik.apply({}, jnp.asarray(x), jnp.asarray(out), method='log_prob'),
                     np.float64)[0, :, 0]
  expected = _logistic_bin_masses(np.tanh(np.float64(pre_mean)), max(log_scale, -20.0))
  keep = expected > 1e-300
  np.testing.assert_allclose(log_p[keep], np.log(expected[keep]), rtol=2e-4, atol=2e-4)
  assert np.all(np.isfinite(log_p))
  np.testing.assert_allclose(np.sum(np.exp(log_p)), 1.0, atol=1e-5)


def test_discretized_logistic_scalar_scale_gradients_and_errors():
  """The scalar ('uniform') scale is one parameter at 0 with a gradient; gradients stay finite at the
  clipped scale and far from the mean; the image mean is (128 tanh + 127.5) / 255; a per-pixel
  likelihood on a C-channel output says what it needs."""
  rng = np.random.default_rng(0)
  x = (rng.integers(0, 256, size=(3, 4, 4, 3)) / 255.0).astype(np.float32)
  out = rng.normal(size=(3, 4, 4, 3)).astype(np.float32) * 3
  lik = likelihoods.DiscretizedLogistic(scale='scalar')
  variables = lik.init(jax.random.key(0), x, out, method='log_prob')
  assert float(variables['params']['log_scale']) == 0.0
  grad = jax.grad(lambda v: jnp.sum(lik.apply(v, x, out, method='log_prob')))(variables)
  assert float(grad['params']['log_scale']) != 0.0
  per_pixel = likelihoods.DiscretizedLogistic()
  extreme = np.concatenate([out * 10, np.full_like(out, -30.0)], axis=-1)  # Clipped at -20.
  g = jax.grad(lambda o: jnp.sum(per_pixel.apply({}, x, o, method='log_prob')))(jnp.asarray(extreme))
  assert np.all(np.isfinite(np.asarray(g)))
  np.testing.assert_allclose(per_pixel.apply({}, np.zeros((1, 6), np.float32), method='mean'),
                             np.full((1, 3), 127.5 / 255.0), rtol=1e-6)
  with pytest.raises(ValueError, match='2C = 6 channels'):
    per_pixel.apply({}, x, out, method='log_prob')


# ------------------------------------------------------------------- any net with any likelihood

# Every non-autoregressive library net, with an image shape it takes.
_NETS = (('dense', (28, 28, 1)), ('conv', (28, 28, 1)), ('resnet', (28, 28, 1)),
         ('gated_mlp', (28, 28, 1)), ('hvae', (28, 28, 1)), ('convhvae', (28, 28, 1)),
         ('infogan', (32, 32, 3)), ('dai_resnet', (32, 32, 3)), ('vaepp', (28, 28, 1)))


@pytest.mark.parametrize('net, shape', _NETS)
def test_every_net_emits_what_the_per_pixel_logistic_needs(net, shape):
  from vaeprior_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  from vaeprior_jax import models  # pylint: disable=g-import-not-at-top
  mc = config_lib.complete_section(dict(net=net, likelihood='discretized_logistic',
                                        logistic_scale='per_pixel', latent_dim=4), 'model')
  model = models.create(mc, shape)
  x = np.random.default_rng(0).integers(0, 256, (2,) + shape).astype(np.float32) / 255
  variables = model.init(jax.random.key(0), x, jax.random.key(1))
  z = np.zeros((2, model.apply(variables, method=lambda m: sum(s for _, s in m.latent_levels))),
               np.float32)
  out = model.apply(variables, z, method=lambda m, z_: m.decode(z_))
  assert out.shape == (2,) + shape[:-1] + (2 * shape[-1],)  # A location and a log-scale per channel.
  assert np.all(np.isfinite(model.apply(variables, x, jax.random.key(2))))


def test_a_gated_mlp_vae_with_a_per_pixel_logistic_trains_and_evaluates():
  """Tomczak & Welling's Frey Faces / Histopathology model: the gated MLP with a per-pixel
  discretized logistic, trained by the library's step and scored by its estimator."""
  import optax  # pylint: disable=g-import-not-at-top
  from vaeprior_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  from vaeprior_jax import evaluation  # pylint: disable=g-import-not-at-top
  from vaeprior_jax import models  # pylint: disable=g-import-not-at-top
  from vaeprior_jax.train import trainer  # pylint: disable=g-import-not-at-top
  config = config_lib.defaults()
  config.model.update(net='gated_mlp', likelihood='discretized_logistic',
                      logistic_scale='per_pixel', latent_dim=8)
  rng = np.random.default_rng(0)
  # 8-bit images with structure to learn: a fixed pattern plus noise.
  pattern = rng.integers(0, 256, (1, 20, 16, 1))
  x = (np.clip(pattern + rng.integers(-20, 21, (32, 20, 16, 1)), 0, 255) / 255).astype(np.float32)
  model = models.create(config.model, x.shape[1:])
  optimizer = optax.adam(1e-3)
  state = trainer.create_train_state(model, optimizer, x, jax.random.key(0))
  step = jax.jit(trainer.make_train_step(model, optimizer, config.train, 1))
  log_likelihood = evaluation.log_likelihood_fn(model, num_samples=20, chunk_size=10)
  before = float(np.mean(log_likelihood(state['params'], x, jax.random.key(1))))
  for _ in range(50):
    state, metrics = step(state, x, jax.random.key(2))
  after = float(np.mean(log_likelihood(state['params'], x, jax.random.key(1))))
  assert np.isfinite(before) and np.isfinite(after) and after > before + 100
  assert state['params']['decoder']['logits']['kernel'].shape[-1] == 2 * 20 * 16
  assert np.isfinite(float(metrics['loss']))


@pytest.mark.parametrize('net', ['pixel', 'pixelhvae'])
def test_autoregressive_decoders_refuse_a_likelihood_needing_other_channels(net):
  from vaeprior_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  from vaeprior_jax import models  # pylint: disable=g-import-not-at-top
  mc = config_lib.complete_section(dict(net=net, likelihood='discretized_logistic',
                                        logistic_scale='per_pixel', latent_dim=4), 'model')
  with pytest.raises(ValueError, match=f'model.net={net} has an autoregressive decoder .* needs 2 '
                                       'channels'):
    models.create(mc, (12, 12, 1))


def test_the_logistic_mean_keeps_its_gradient_where_tanh_saturates():
  """The critic reads the decoder's mean: at |tanh| > 127.5 / 128 it lies outside [0, 1], and its
  gradient is tanh's, not a clip's zero."""
  lik = likelihoods.DiscretizedLogistic(scale='scalar', event_ndims=1)
  out = jnp.array([-4.0, 0.0, 4.0])
  mean = lik.apply({'params': {'log_scale': jnp.float32(0.0)}}, out, method='mean')
  np.testing.assert_allclose(mean, (128 * np.tanh([-4.0, 0.0, 4.0]) + 127.5) / 255, atol=1e-7)
  assert mean[0] < 0 and mean[2] > 1
  grad = jax.grad(lambda o: jnp.sum(lik.apply({'params': {'log_scale': jnp.float32(0.0)}}, o,
                                              method='mean')))(out)
  np.testing.assert_allclose(grad, 128 / 255 * (1 - np.tanh([-4.0, 0.0, 4.0]) ** 2), rtol=1e-3)
  assert grad[0] > 0 and grad[2] > 0
