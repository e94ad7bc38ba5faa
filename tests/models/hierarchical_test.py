"""The two-level model (Tomczak & Welling, Eqs. 10-15): the importance-weighted estimator against the
closed-form marginal of a linear-Gaussian two-level model, its joint prior p(z1|z2) p(z2) as a density,
the VampPrior over z2, and the gated HVAE / ConvHVAE / PixelHVAE networks."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import scipy.stats

from vaeprior_jax.evaluation import estimators
from vaeprior_jax import likelihoods
from vaeprior_jax import models
from vaeprior_jax import nets
from vaeprior_jax import priors


# ------------------------------------------------------------------ a linear-Gaussian two-level model
# z2 ~ N(0, 1), z1 | z2 ~ N(c z2 + c0, s1^2), x | z1, z2 ~ N(a z1 + b z2 + a0, sigma^2 I_3); x is a
# 1 x 3 x 1 "image". With scalar z1, z2 the exact posterior factorises as p(z2|x) p(z1|x, z2), both
# Gaussian with means affine in (x, z2) and constant variances: the model's own q can represent it.
C, C0, S1 = 0.8, 0.3, 0.6
A = np.array([1.0, -0.5, 0.7])
B = np.array([0.4, 0.9, -0.3])
A0 = np.array([0.1, -0.2, 0.05])
SIGMA = 0.5


def _flat(x):
  return x.reshape(x.shape[:-3] + (-1,))


class _AffineGaussian(nn.Module):
  """(mean, log_std) of a scalar Gaussian: mean affine in the flattened inputs, log_std a parameter."""

  @nn.compact
  def __call__(self, *inputs):
    h = jnp.concatenate([_flat(v) if v.ndim >= 3 and v.shape[-3:] == (1, 3, 1) else v
                         for v in inputs], axis=-1)
    mean = nn.Dense(1, name='mean')(h)
    return mean, jnp.broadcast_to(self.param('log_std', nn.initializers.zeros, (1,)), mean.shape)


class _LinearDecoder(nn.Module):

  @nn.compact
  def __call__(self, z1, z2):
    out = nn.Dense(3, name='out')(jnp.concatenate([z1, z2], axis=-1))
    return out.reshape(z1.shape[:-1] + (1, 3, 1))


def _linear_model_and_posterior():
  """The model, its parameters with q set to the exact posterior, and the exact log p(x) function."""
  model = models.HierarchicalVAE(
      encoder_z2=_AffineGaussian(), encoder_z1=_AffineGaussian(),
      conditional_prior=_AffineGaussian(), decoder=_LinearDecoder(),
      prior=priors.StandardNormalPrior(1), z1_dim=1,
      likelihood=likelihoods.Gaussian(float(np.log(SIGMA))))
  mu_z = np.array([C0, 0.0])
  cov_z = np.array([[C ** 2 + S1 ** 2, C], [C, 1.0]])
  m = np.stack([A, B], axis=1)  # x = m z + A0 + noise
  prec_post = np.linalg.inv(cov_z) + m.T @ m / SIGMA ** 2
  cov_post = np.linalg.inv(prec_post)
  gain = cov_post @ m.T / SIGMA ** 2            # mu_post(x) = gain x + offset
  offset = cov_post @ np.linalg.inv(cov_z) @ mu_z - gain @ A0
  r = cov_post[0, 1] / cov_post[1, 1]           # E[z1 | x, z2] = mu1(x) + r (z2 - mu2(x))
  f32 = lambda v: jnp.asarray(v, jnp.float32)
  params = {
      'encoder_z2': {'mean': {'kernel': f32(gain[1][:, None]), 'bias': f32([offset[1]])},
                     'log_std': f32([0.5 * np.log(cov_post[1, 1])])},
      'encoder_z1': {'mean': {'kernel': f32(np.concatenate([gain[0] - r * gain[1], [r]])[:, None]),
                              'bias': f32([offset[0] - r * offset[1]])},
                     'log_std': f32([0.5 * np.log(cov_post[0, 0] - cov_post[0, 1] ** 2 /
                                                  cov_post[1, 1])])},
      'conditional_prior': {'mean': {'kernel': f32([[C]]), 'bias': f32([C0])},
                            'log_std': f32([np.log(S1)])},
      'decoder': {'out': {'kernel': f32(m.T), 'bias': f32(A0)}},
  }

  def log_px(x):
    return scipy.stats.multivariate_normal(m @ mu_z + A0, m @ cov_z @ m.T + SIGMA ** 2 *
                                           np.eye(3)).logpdf(x.reshape(-1, 3))

  return model, params, log_px


def _x(n=5, seed=0):
  return jnp.asarray(np.random.default_rng(seed).normal(size=(n, 1, 3, 1)) * 1.5, jnp.float32)


def _metrics(model, params, x, num_samples, seed=1):
  terms_fn = lambda x_, k: model.apply({'params': params}, x_, k, method=model.log_weight_terms)
  return jax.jit(lambda x_, k: estimators.importance_weighted_metrics(
      terms_fn, x_, k, num_samples, chunk_size=500))(x, jax.random.key(seed))


def test_exact_posterior_gives_every_sample_the_weight_log_px():
  model, params, log_px = _linear_model_and_posterior()
  x = _x()
  weights = jax.vmap(lambda k: model.apply({'params': params}, x, k,
                                           method=model.log_importance_weight))(
                                               jax.random.split(jax.random.key(0), 64))
  # log p(x|z1,z2) + log p(z1|z2) + log p(z2) - log q(z1|x,z2) - log q(z2|x) = log p(x) for any z.
  np.testing.assert_allclose(np.asarray(weights), np.broadcast_to(log_px(np.asarray(x)), (64, 5)),
                             atol=2e-4)


def _joint_q(params, x):
  """Mean [n, 2] (z1, z2) and covariance [n, 2, 2] of q(z1|x, z2) q(z2|x) for the linear model."""
  p2, p1 = params['encoder_z2'], params['encoder_z1']
  xf = np.asarray(x, np.float64).reshape(-1, 3)
  m2 = xf @ np.asarray(p2['mean']['kernel'], np.float64)[:, 0] + float(p2['mean']['bias'][0])
  v2 = np.exp(2 * float(p2['log_std'][0]))
  k1 = np.asarray(p1['mean']['kernel'], np.float64)[:, 0]
  beta = k1[3]
  m1 = xf @ k1[:3] + float(p1['mean']['bias'][0]) + beta * m2
  v1 = np.exp(2 * float(p1['log_std'][0]))
  cov = np.array([[beta ** 2 * v2 + v1, beta * v2], [beta * v2, v2]])
  return np.stack([m1, m2], axis=1), np.broadcast_to(cov, (len(xf), 2, 2))


def _true_posterior(x):
  mu_z = np.array([C0, 0.0])
  cov_z = np.array([[C ** 2 + S1 ** 2, C], [C, 1.0]])
  m = np.stack([A, B], axis=1)
  cov = np.linalg.inv(np.linalg.inv(cov_z) + m.T @ m / SIGMA ** 2)
  xf = np.asarray(x, np.float64).reshape(-1, 3)
  mean = (cov @ (np.linalg.inv(cov_z) @ mu_z[:, None] + m.T @ (xf - A0).T / SIGMA ** 2)).T
  return mean, cov


def _gaussian_kl(m0, c0, m1, c1):
  c1_inv = np.linalg.inv(c1)
  d = m1 - m0
  return 0.5 * (np.trace(c1_inv @ c0) + d @ c1_inv @ d - 2 + np.log(np.linalg.det(c1) /
                                                                   np.linalg.det(c0)))


def test_estimates_of_a_poor_posterior_match_the_closed_form_marginal_and_elbo():
  model, params, log_px = _linear_model_and_posterior()
  # Move q away from the posterior: shifted, with a wrong dependence of z1 on z2, and wider (so that
  # the importance weights stay bounded).
  params['encoder_z2']['log_std'] = params['encoder_z2']['log_std'] + 0.4
  params['encoder_z1']['log_std'] = params['encoder_z1']['log_std'] + 0.4
  params['encoder_z2']['mean']['bias'] = params['encoder_z2']['mean']['bias'] + 0.3
  params['encoder_z1']['mean']['kernel'] = params['encoder_z1']['mean']['kernel'].at[3, 0].add(-0.2)
  x = _x()
  exact = log_px(np.asarray(x))
  q_mean, q_cov = _joint_q(params, x)
  p_mean, p_cov = _true_posterior(x)
  kl = np.array([_gaussian_kl(q_mean[i], q_cov[i], p_mean[i], p_cov) for i in range(len(exact))])
  assert np.all(kl > 0.05)  # q is clearly not the posterior

  m = jax.device_get(_metrics(model, params, x, 4000))
  # ELBO = log p(x) - KL(q(z1, z2|x) || p(z1, z2|x)): the Monte Carlo mean of 4000 log-weights,
  # within 4 of its standard errors (measured on another 4000 log-weights).
  log_w = jax.vmap(lambda k: model.apply({'params': params}, x, k,
                                         method=model.log_importance_weight))(
                                             jax.random.split(jax.random.key(7), 4000))
  stderr = np.std(np.asarray(log_w, np.float64), axis=0) / np.sqrt(4000)
  assert np.all(np.abs(m['elbo'] - (exact - kl)) < 4 * stderr + 1e-3)
  # The 4000-sample bound is log p(x) up to Monte Carlo error: 4 standard errors of the log of a mean
  # of 4000 weights (delta method: relative std of the weights / sqrt(4000)), each under 0.1 nats.
  w = np.exp(np.asarray(log_w, np.float64) - np.max(np.asarray(log_w, np.float64), axis=0))
  tolerance = 4 * np.std(w, axis=0) / np.mean(w, axis=0) / np.sqrt(4000) + 2e-3
  assert np.all(tolerance < 0.1)
  assert np.all(np.abs(m['log_likelihood'] - exact) < tolerance)
  assert np.all(m['log_likelihood'] > m['elbo'])
  np.testing.assert_allclose(m['kl_z_given_x'], m['log_likelihood'] - m['elbo'], rtol=1e-5)
  # With one sample the bound is the ELBO; on average it increases with the number of samples.
  many = _x(400, seed=3)
  estimates = [float(np.mean(_metrics(model, params, many, k, seed=2)['log_likelihood']))
               for k in (1, 10, 100)]
  truth = float(np.mean(log_px(np.asarray(many))))
  assert estimates[0] < estimates[1] - 0.03 < estimates[2] - 0.03 < truth


# --------------------------------------------------------------------------- the two-level prior

GRID = np.linspace(-7.0, 7.0, 561)
CELL = (GRID[1] - GRID[0]) ** 2
POINTS = jnp.asarray(np.stack(np.meshgrid(GRID, GRID), -1).reshape(-1, 2), jnp.float32)


def _hvae(net='hvae', prior='vampprior', z1_dim=1, z2_dim=1, shape=(8, 8, 1), num_components=5):
  config = ml_collections.ConfigDict(dict(
      net=net, prior=prior, posterior='gaussian', latent_dim=z2_dim, z1_dim=z1_dim, flow_depth=1,
      num_components=num_components, pixelcnn_layers=1))
  model = models.create(config, shape)
  x = jnp.asarray(np.random.default_rng(0).random((4,) + shape) > 0.5, jnp.float32)
  params = jax.jit(model.init)(jax.random.key(0), x, jax.random.key(1))['params']
  return model, params, x


def test_two_level_prior_integrates_to_one_and_its_samples_follow_it():
  # p(z1, z2) = p(z1|z2) p(z2) with p(z2) the VampPrior over q(z2|u_k), z1 and z2 scalars.
  model, params, _ = _hvae()
  heads = params['encoder_z2']['heads']  # spread the VampPrior's components apart
  heads['mean']['kernel'] = heads['mean']['kernel'] * 4.0
  heads = params['conditional_prior']['heads']  # keep p(z1|z2) within the grid, resolvable by it
  heads['mean']['kernel'] = heads['mean']['kernel'] * 0.3
  heads['log_std']['kernel'] = heads['log_std']['kernel'] * 0.2
  log_p = jax.jit(lambda p: model.apply({'params': p}, POINTS, method=model.prior_log_prob))(params)
  samples = np.asarray(jax.jit(lambda p: model.apply({'params': p}, jax.random.key(2), 40000,
                                                     method=model.sample_prior))(params))
  inside = np.all(np.abs(samples) < GRID[-1], axis=1)
  assert inside.mean() > 0.98
  p = np.asarray(jnp.exp(log_p), np.float64) * CELL
  np.testing.assert_allclose(p.sum(), inside.mean(), atol=3e-3)
  points = np.asarray(POINTS, np.float64)
  kept = samples[inside]
  np.testing.assert_allclose(kept.mean(0), p @ points / p.sum(), atol=0.04)
  np.testing.assert_allclose(kept.T @ kept / len(kept), (points * p[:, None]).T @ points / p.sum(),
                             atol=0.1)


def test_vampprior_of_z2_is_the_mean_of_q_z2_of_the_pseudo_inputs_and_gets_gradients():
  model, params, x = _hvae(z1_dim=2, z2_dim=3)
  u = model.apply({'params': params}, method=lambda m: m.prior.pseudo_inputs())
  means, log_stds = (np.asarray(a, np.float64) for a in
                     model.apply({'params': params}, u, method=lambda m, u_: m.encoder_z2(u_)))
  z2 = np.random.default_rng(1).normal(size=(4, 3))
  naive = np.log(np.mean([scipy.stats.multivariate_normal(means[k], np.diag(np.exp(2 * log_stds[k])))
                          .pdf(z2) for k in range(5)], axis=0))
  got = model.apply({'params': params}, jnp.asarray(z2, jnp.float32),
                    method=model.top_prior_log_prob)
  np.testing.assert_allclose(got, naive, rtol=1e-5, atol=1e-5)
  pseudo_input_grads = lambda m, p: jax.jit(jax.grad(lambda p_: -jnp.mean(m.apply(
      {'params': p_}, x, jax.random.key(3)))))(p)['prior']['pseudo_inputs']
  assert float(jnp.sum(jnp.abs(pseudo_input_grads(model, params)))) > 0
  # The data variant: fixed training images, no gradient.
  model = models.create(ml_collections.ConfigDict(dict(
      net='hvae', prior='vampprior_data', posterior='gaussian', latent_dim=3, z1_dim=2, flow_depth=1,
      num_components=5)), (8, 8, 1))
  assert float(jnp.sum(jnp.abs(pseudo_input_grads(model, params)))) == 0


# ---------------------------------------------------------------------------------- the networks

def test_gated_layers_compute_their_formula():
  x = jax.random.normal(jax.random.key(0), (3, 5))
  layer = nets.tomczak_nets.GatedDense(4)
  variables = layer.init(jax.random.key(1), x)
  p = variables['params']
  expected = ((x @ p['h']['kernel'] + p['h']['bias']) *
              jax.nn.sigmoid(x @ p['gate']['kernel'] + p['gate']['bias']))
  np.testing.assert_allclose(layer.apply(variables, x), expected, rtol=1e-5, atol=1e-6)
  image = jax.random.normal(jax.random.key(2), (2, 8, 8, 3))
  conv = nets.tomczak_nets.GatedConv(4, 3, 2)
  variables = conv.init(jax.random.key(3), image)
  p = variables['params']

  def plain(q):  # PyTorch-style padding 1 for a 3x3 kernel, stride 2.
    return jax.lax.conv_general_dilated(image, q['kernel'], (2, 2), ((1, 1), (1, 1)),
                                        dimension_numbers=('NHWC', 'HWIO', 'NHWC')) + q['bias']

  out = conv.apply(variables, image)
  assert out.shape == (2, 4, 4, 4)
  np.testing.assert_allclose(out, plain(p['h']) * jax.nn.sigmoid(plain(p['gate'])), rtol=1e-5,
                             atol=1e-5)


def test_two_level_networks_have_the_papers_sizes():
  config = ml_collections.ConfigDict(dict(net='convhvae', prior='standard', posterior='gaussian',
                                          latent_dim=40, z1_dim=40, flow_depth=1))
  model = models.create(config, (28, 28, 1))
  params = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((2, 28, 28, 1)),
                          jax.random.key(1))['params']
  enc2, enc1 = params['encoder_z2'], params['encoder_z1']
  assert enc2['heads']['mean']['kernel'].shape == (294, 40)  # 7 x 7 x 6 features
  assert enc1['hidden_z2']['h']['kernel'].shape == (40, 294)
  assert enc1['hidden_joint']['h']['kernel'].shape == (588, 300)
  assert params['conditional_prior']['hidden_1']['h']['kernel'].shape == (300, 300)
  dec = params['decoder']
  assert dec['hidden_joint']['h']['kernel'].shape == (600, 784)
  assert [dec[f'hidden_conv_{i}']['h']['kernel'].shape for i in range(4)] == [
      (3, 3, 1, 64), (3, 3, 64, 64), (3, 3, 64, 64), (3, 3, 64, 64)]
  mlp = nets.base.build('hvae', (28, 28, 1), latent_dim=40, z1_dim=40)
  assert [type(mlp[k]).__name__ for k in ('encoder_z2', 'encoder_z1', 'conditional_prior',
                                          'decoder')] == ['EncoderZ2', 'EncoderZ1', 'ConditionalPrior', 'Decoder']
  # Log-variances are hard-tanh'ed to [-6, 2]: log-stds in [-3, 1] whatever the weights.
  model, params, x = _hvae(z2_dim=6)
  heads = params['encoder_z2']['heads']
  heads['log_std']['kernel'] = heads['log_std']['kernel'] * 1e4
  _, log_std = jax.jit(lambda p: model.apply({'params': p}, x,
                                             method=lambda m, x_: m.encoder_z2(x_)))(params)
  assert float(log_std.min()) == -3.0 and float(log_std.max()) == 1.0


def test_importance_weighted_bound_is_above_the_elbo():
  model, params, x = _hvae(prior='mog', z1_dim=3, z2_dim=2)
  m = jax.device_get(_metrics(model, params, x, 200))
  assert np.all(np.isfinite(m['log_likelihood']))
  assert float(np.mean(m['log_likelihood'])) > float(np.mean(m['elbo']))


def test_pixelhvae_decoder_is_autoregressive_in_raster_order():
  model, params, x = _hvae(net='pixelhvae', z1_dim=3, z2_dim=2)
  z = jax.random.normal(jax.random.key(5), (1, 5))
  jac = np.asarray(jax.jit(jax.jacrev(lambda x_: model.apply(
      {'params': params}, z, x_[None], method='decode').reshape(-1)))(x[0])).reshape(64, 64)
  i, j = np.meshgrid(np.arange(64), np.arange(64), indexing='ij')
  assert np.all(jac[j >= i] == 0.0)  # the logits of pixel i see no pixel j >= i
  assert np.count_nonzero(jac[63]) > 10
  dz = np.asarray(jax.jit(jax.jacrev(lambda z_: model.apply(
      {'params': params}, z_, x[:1], method='decode').reshape(-1)))(z)).reshape(64, -1)
  assert np.all(np.abs(dz[:, :3]).sum(-1) > 0) and np.all(np.abs(dz[:, 3:]).sum(-1) > 0)  # z1, z2
