"""Networks and the VAE: App. B.2 shapes, config validation, ELBO vs. importance-weighted bound."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import helpers
from vaeprior_jax.evaluation import estimators
from vaeprior_jax import likelihoods
from vaeprior_jax.methods import objectives
from vaeprior_jax import models
from vaeprior_jax import nets
from vaeprior_jax import posteriors
from vaeprior_jax import priors


def _config(**kw):
  base = dict(net='dense', prior='realnvp', posterior='gaussian', latent_dim=6, flow_depth=2,
              flow_hidden_units=16)
  base.update(kw)
  return ml_collections.ConfigDict(base)


def _nets(name, shape, latent_dim=40):
  built = nets.base.build(name, shape, latent_dim=latent_dim)
  return built['encoder'], built['decoder']


def _binary(shape, seed=0):
  return (jax.random.uniform(jax.random.key(seed), shape) > 0.5).astype(jnp.float32)


# Every net at 28x28x1 and 32x32x3, but PixelVAE at 28x28x1 only (suite time): it shares the ResnetVAE
# encoder and decoder trunk, run here at 32x32x3; its PixelCNN layers are checked at 28x28x1 here and
# for causality at 8x8x1.
@pytest.mark.parametrize('net, shape', [(n, s) for n in nets.xu_nets.NETS for s in ((28, 28, 1), (32, 32, 3))
                                        if not (n == 'pixel' and s[-1] == 3)])
def test_encoder_and_decoder_shapes(net, shape):
  encoder, decoder = _nets(net, shape)
  x = _binary((3,) + shape)
  enc_vars = encoder.init(jax.random.key(0), x)
  mean, log_std = encoder.apply(enc_vars, x)
  assert mean.shape == log_std.shape == (3, 40)
  z = jnp.zeros((3, 40))
  args = (z, x) if getattr(decoder, 'autoregressive', False) else (z,)
  logits = jax.jit(lambda *a: decoder.apply(decoder.init(jax.random.key(1), *a), *a))(*args)
  assert logits.shape == (3,) + shape


def test_resnet_layers_have_the_shapes_of_appendix_b2():
  encoder, decoder = _nets('resnet', (28, 28, 1))
  x = _binary((2, 28, 28, 1))
  enc_vars = encoder.init(jax.random.key(0), x)
  _, state = encoder.apply(enc_vars, x, capture_intermediates=True, mutable=['intermediates'])
  got = [state['intermediates'][f'hidden_{i}']['__call__'][0].shape[1:] for i in range(6)]
  assert got == [(28, 28, 32), (28, 28, 32), (14, 14, 64), (14, 14, 64), (7, 7, 64), (7, 7, 16)]
  z = jnp.zeros((2, 40))
  dec_vars = decoder.init(jax.random.key(1), z)
  _, state = decoder.apply(dec_vars, z, capture_intermediates=True, mutable=['intermediates'])
  inter = state['intermediates']
  assert inter['hidden_dense']['__call__'][0].shape[1:] == (784,)
  got = [inter[f'hidden_{i}']['__call__'][0].shape[1:] for i in range(5)]
  assert got == [(7, 7, 64), (14, 14, 64), (14, 14, 64), (28, 28, 32), (28, 28, 32)]


def test_dense_layers_have_the_sizes_of_appendix_b2():
  encoder, decoder = _nets('dense', (28, 28, 1))
  p = encoder.init(jax.random.key(0), _binary((1, 28, 28, 1)))['params']
  assert p['hidden_0']['kernel'].shape == (784, 500)
  assert p['hidden_1']['kernel'].shape == (500, 500)
  assert p['heads']['mean']['kernel'].shape == p['heads']['log_std']['kernel'].shape == (500, 40)
  p = decoder.init(jax.random.key(0), jnp.zeros((1, 40)))['params']
  assert [p[k]['kernel'].shape for k in ('hidden_0', 'hidden_1', 'logits')] == [
      (40, 500), (500, 500), (500, 784)]


@pytest.mark.parametrize('key,value,allowed', [
    ('net', 'mlp', 'dense, conv, resnet'), ('prior', 'vamp', 'standard, realnvp'),
    ('posterior', 'iaf', 'gaussian, realnvp')])
def test_unknown_names_fail_with_the_allowed_values(key, value, allowed):
  with pytest.raises(ValueError, match=f"model.{key} '{value}'; allowed: {allowed}"):
    models.create(_config(**{key: value}), (28, 28, 1))


def test_bad_shapes_and_sizes_fail_clearly():
  with pytest.raises(ValueError, match=r'divisible by 4, got \(30, 30, 1\)'):
    models.create(_config(net='conv'), (30, 30, 1))
  with pytest.raises(ValueError, match='flow_depth must be >= 1'):
    models.create(_config(flow_depth=0), (28, 28, 1))


@pytest.mark.parametrize('prior,posterior', [('standard', 'gaussian'), ('realnvp', 'gaussian'),
                                             ('standard', 'realnvp'), ('realnvp', 'realnvp')])
def test_vae_elbo_and_importance_weights(prior, posterior):
  model = models.create(_config(prior=prior, posterior=posterior), (28, 28, 1))
  x = _binary((16, 28, 28, 1))
  variables = model.init(jax.random.key(0), x, jax.random.key(1))
  key = jax.random.key(2)
  elbo = model.apply(variables, x, key, method=model.elbo)
  log_w = model.apply(variables, x, key, method=model.log_importance_weight)
  np.testing.assert_allclose(elbo, log_w, rtol=1e-6)
  warm = model.apply(variables, x, key, 0.1, method=model.elbo)
  terms = model.apply(variables, x, key, method=model.log_weight_terms)
  np.testing.assert_allclose(warm, terms['log_px_z'] + 0.1 * (terms['log_pz'] - terms['log_qz']),
                             rtol=1e-5)
  log_w_fn = lambda x_, k: model.apply(variables, x_, k, method=model.log_importance_weight)
  iw = estimators.importance_weighted_log_likelihood(log_w_fn, x, jax.random.key(3), 200, 50)
  mean_elbo = jnp.mean(jax.vmap(lambda k: log_w_fn(x, k))(jax.random.split(jax.random.key(4), 200)),
                       axis=0)
  assert float(jnp.mean(iw)) > float(jnp.mean(mean_elbo))
  samples = model.apply(variables, jax.random.key(5), 4, method=model.sample)
  assert samples.shape == (4, 28, 28, 1) and float(samples.min()) >= 0 and float(samples.max()) <= 1


def test_l2_penalty_covers_exactly_the_non_linear_kernels():
  model = models.create(_config(net='resnet', posterior='realnvp'), (28, 28, 1))
  # The parameters' structure from an abstract init (nothing compiled), filled with random values.
  shapes = jax.eval_shape(model.init, jax.random.key(0), _binary((4, 28, 28, 1)),
                          jax.random.key(1))['params']
  rng = np.random.default_rng(2)
  params = jax.tree.map(lambda l: rng.normal(size=l.shape).astype(np.float32), shapes)
  flat = {'/'.join(str(k.key) for k in path): leaf
          for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]}
  included = [p for p in flat if p.endswith('kernel') and '/hidden' in '/' + p]
  expected = sum(0.5 * np.sum(np.square(flat[p], dtype=np.float64)) for p in included)
  np.testing.assert_allclose(float(objectives.l2_penalty(params)), expected, rtol=1e-5)
  assert 'prior/flow/blocks/coupling/hidden/kernel' in included
  assert 'encoder/hidden_2/conv_0/kernel' in included
  for linear in ('encoder/heads/mean/kernel', 'decoder/logits/kernel',
                 'prior/flow/blocks/invertible_dense/kernel', 'prior/flow/blocks/coupling/scale/kernel'):
    assert linear in flat and linear not in included


@pytest.mark.parametrize('shape', [(), (7,), (784, 500), (3, 3, 32, 64), (20, 40, 40)])
def test_sum_of_squares_matches_float64_and_has_gradient_2x(shape):
  x = jax.random.normal(jax.random.key(0), shape) * 3.0
  expected = np.sum(np.square(np.asarray(x, np.float64)))
  np.testing.assert_allclose(float(objectives.sum_of_squares(x)), expected, rtol=1e-6)
  np.testing.assert_allclose(jax.grad(objectives.sum_of_squares)(x), 2.0 * np.asarray(x), rtol=1e-6)


def _pixel_decoder_and_params(shape=(8, 8, 1)):
  decoder = nets.base.build('pixel', shape, latent_dim=4)['decoder']
  z = jnp.zeros((2, 4))
  x = jnp.zeros((2,) + shape)
  params = jax.jit(decoder.init)(jax.random.key(0), z, x)['params']
  # Random (not zero-initialised) weights everywhere, so that no dependence hides behind a zero.
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(1), len(leaves))
  params = jax.tree.unflatten(tree, [0.3 * jax.random.normal(k, l.shape) for k, l in
                                     zip(keys, leaves)])
  return decoder, params


def test_pixelcnn_decoder_is_causal_in_raster_order():
  shape = (8, 8, 1)
  decoder, params = _pixel_decoder_and_params(shape)
  z = jax.random.normal(jax.random.key(2), (1, 4))
  x = (jax.random.uniform(jax.random.key(3), (1,) + shape) > 0.5).astype(jnp.float32)
  logits_fn = lambda x_: decoder.apply({'params': params}, z, x_).reshape(-1)
  jac = np.asarray(jax.jit(jax.jacrev(logits_fn))(x)).reshape(64, 64)  # d logit_i / d x_j
  i, j = np.meshgrid(np.arange(64), np.arange(64), indexing='ij')
  # The logit of pixel i depends on no pixel j >= i ...
  assert np.all(jac[j >= i] == 0.0)
  # ... and does depend on its left and upper neighbours, and on pixels far up-left (receptive field).
  for row, col in ((3, 4), (5, 1), (7, 7)):
    pixel = row * 8 + col
    assert jac[pixel, pixel - 1] != 0.0 and jac[pixel, pixel - 8] != 0.0
  assert np.count_nonzero(jac[63]) > 30
  # z reaches every pixel, the first one included.
  dz = np.asarray(jax.jit(jax.jacrev(
      lambda z_: decoder.apply({'params': params}, z_, x).reshape(-1)))(z))
  assert np.all(np.abs(dz).reshape(64, -1).sum(-1) > 0)


def test_pixelcnn_dropout_is_active_only_in_training():
  decoder, params = _pixel_decoder_and_params()
  z, x = jnp.ones((2, 4)), jnp.ones((2, 8, 8, 1))
  apply = lambda **kw: np.asarray(decoder.apply({'params': params}, z, x, **kw))
  eval_a, eval_b = apply(), apply(deterministic=True, dropout_rng=jax.random.key(0))
  train_a = apply(deterministic=False, dropout_rng=jax.random.key(0))
  train_b = apply(deterministic=False, dropout_rng=jax.random.key(1))
  np.testing.assert_array_equal(eval_a, eval_b)
  assert not np.allclose(train_a, eval_a) and not np.allclose(train_a, train_b)


def test_pixel_vae_samples_autoregressively():
  config = helpers.tiny_config(net='pixel', prior='realnvp')
  shape = (8, 8, 1)
  model = models.create(config.model, shape)
  x = (jax.random.uniform(jax.random.key(0), (4,) + shape) > 0.5).astype(jnp.float32)
  params = jax.jit(model.init)({'params': jax.random.key(1)}, x, jax.random.key(2))['params']
  samples = np.asarray(jax.jit(lambda p, k: models.sample_images(model, p, k, 3, shape))(
      params, jax.random.key(4)))
  assert samples.shape == (3,) + shape and np.all((samples > 0) & (samples < 1))
  # The returned means are p(x_i = 1 | x_<i, z) of the drawn pixels: pixel 0's equals the decoder's
  # output for an all-zero image (its logits see no pixel).
  z = model.apply({'params': params}, jax.random.split(jax.random.key(4))[0], 3,
                  method=model.sample_prior)
  first = jax.nn.sigmoid(model.apply({'params': params}, z, jnp.zeros((3,) + shape),
                                     method=model.decode))
  np.testing.assert_allclose(samples[:, 0, 0, 0], np.asarray(first)[:, 0, 0, 0], rtol=1e-5)


def test_the_second_stage_vae_models_latent_vectors():
  """Dai & Wipf's second stage: dense ReLU layers with the input concatenated to the last hidden
  layer before the heads, a Gaussian likelihood over vectors with a learned gamma_z."""
  config = _config(net='second_stage', likelihood='gaussian', latent_dim=5, prior='standard')
  config.second_stage_units, config.second_stage_layers = 32, 3
  model = models.create(config, (7,))
  u = jax.random.normal(jax.random.key(0), (4, 7))
  params = model.init(jax.random.key(1), u, jax.random.key(2))['params']
  assert [params['encoder'][f'hidden_{i}']['kernel'].shape for i in range(3)] == [
      (7, 32), (32, 32), (32, 32)]
  assert params['encoder']['heads']['mean']['kernel'].shape == (7 + 32, 5)
  assert params['decoder']['mean']['kernel'].shape == (5 + 32, 7)
  assert params['likelihood']['log_gamma'].shape == ()
  t = model.apply({'params': params}, u, jax.random.key(3), method=model.log_weight_terms)
  assert all(v.shape == (4,) and np.all(np.isfinite(v)) for v in t.values())
  with pytest.raises(ValueError, match=r'latent vectors \[d\]; got an input shape \(28, 28, 1\)'):
    models.create(config, (28, 28, 1))


def test_vae_built_directly_without_a_likelihood_is_bernoulli():
  """models.VAE(likelihood=None), built by hand rather than by models.create, means Bernoulli logits:
  the same ELBO as with likelihoods.Bernoulli() given, and no extra parameters."""
  parts = dict(encoder=nets.xu_nets.DenseEncoder(4), decoder=nets.xu_nets.DenseDecoder((28, 28, 1)),
               prior=priors.StandardNormalPrior(4), posterior=posteriors.GaussianPosterior())
  x = (jax.random.uniform(jax.random.key(3), (2, 28, 28, 1)) > 0.5).astype(jnp.float32)
  default, given = models.VAE(**parts), models.VAE(likelihood=likelihoods.Bernoulli(), **parts)
  variables = default.init(jax.random.key(0), x, jax.random.key(1), method=default.elbo)
  assert set(variables['params']) == {'encoder', 'decoder'}
  np.testing.assert_array_equal(
      default.apply(variables, x, jax.random.key(1), method=default.elbo),
      given.apply(variables, x, jax.random.key(1), method=given.elbo))
