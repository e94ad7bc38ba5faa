"""Networks and the VAE: App. B.2 shapes, config validation, ELBO vs. importance-weighted bound."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from vaeprior_jax import evaluation
from vaeprior_jax import models
from vaeprior_jax import nets
from vaeprior_jax import training


def _config(**kw):
  base = dict(net='dense', prior='realnvp', posterior='gaussian', latent_dim=6, flow_depth=2,
              flow_hidden_units=16)
  base.update(kw)
  return ml_collections.ConfigDict(base)


def _binary(shape, seed=0):
  return (jax.random.uniform(jax.random.key(seed), shape) > 0.5).astype(jnp.float32)


@pytest.mark.parametrize('net', nets.NETS)
@pytest.mark.parametrize('shape', [(28, 28, 1), (32, 32, 3)])
def test_encoder_and_decoder_shapes(net, shape):
  encoder, decoder = nets.create(net, 40, shape)
  x = _binary((3,) + shape)
  enc_vars = encoder.init(jax.random.key(0), x)
  mean, log_std = encoder.apply(enc_vars, x)
  assert mean.shape == log_std.shape == (3, 40)
  z = jnp.zeros((3, 40))
  logits = decoder.apply(decoder.init(jax.random.key(1), z), z)
  assert logits.shape == (3,) + shape


def test_resnet_layers_have_the_shapes_of_appendix_b2():
  encoder, decoder = nets.create('resnet', 40, (28, 28, 1))
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
  encoder, decoder = nets.create('dense', 40, (28, 28, 1))
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
  iw = evaluation.importance_weighted_log_likelihood(log_w_fn, x, jax.random.key(3), 200, 50)
  mean_elbo = jnp.mean(jax.vmap(lambda k: log_w_fn(x, k))(jax.random.split(jax.random.key(4), 200)),
                       axis=0)
  assert float(jnp.mean(iw)) > float(jnp.mean(mean_elbo))
  samples = model.apply(variables, jax.random.key(5), 4, method=model.sample)
  assert samples.shape == (4, 28, 28, 1) and float(samples.min()) >= 0 and float(samples.max()) <= 1


def test_l2_penalty_covers_exactly_the_non_linear_kernels():
  model = models.create(_config(net='resnet', posterior='realnvp'), (28, 28, 1))
  params = model.init(jax.random.key(0), _binary((4, 28, 28, 1)), jax.random.key(1))['params']
  flat = {'/'.join(str(k.key) for k in path): leaf
          for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]}
  included = [p for p in flat if p.endswith('kernel') and '/hidden' in '/' + p]
  expected = sum(0.5 * float(jnp.sum(flat[p] ** 2)) for p in included)
  np.testing.assert_allclose(float(training.l2_penalty(params)), expected, rtol=1e-5)
  assert 'prior/flow/blocks/coupling/hidden/kernel' in included
  assert 'encoder/hidden_2/conv_0/kernel' in included
  for linear in ('encoder/heads/mean/kernel', 'decoder/logits/kernel',
                 'prior/flow/blocks/invertible_dense/kernel', 'prior/flow/blocks/coupling/scale/kernel'):
    assert linear in flat and linear not in included
