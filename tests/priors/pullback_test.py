"""The pull-back prior and its partition-function estimators in 2-D, against a NumPy re-computation of
f(z) = N(z; 0, I) exp(-beta D(G(z))) and Z by numerical integration on a fine grid (float64)."""

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh

from vaeprior_jax import likelihoods
from vaeprior_jax import models
from vaeprior_jax import posteriors
from vaeprior_jax import priors
from vaeprior_jax.priors.pullback import normalizer

W, XI = 3.0, 0.4  # beta = W sigmoid(xi)
BETA = W / (1 + math.exp(-XI))


class _Critic(nn.Module):
  """D(x) = v . tanh(A vec(x) + b) for 'images' [B, 1, 1, 2]."""

  @nn.compact
  def __call__(self, x):
    h = jnp.tanh(nn.Dense(4, kernel_init=nn.initializers.normal(1.5), name='a')(
        x.reshape(x.shape[0], -1)))
    return nn.Dense(1, kernel_init=nn.initializers.normal(1.0), name='v')(h)[..., 0]


class _Decoder(nn.Module):
  """Logits = z as a [1, 1, 2] image: G(z) = sigmoid(z)."""

  @nn.compact
  def __call__(self, z):
    return z.reshape(z.shape[:-1] + (1, 1, 2))


class _Encoder(nn.Module):
  """q(z|x) with mean = the 'image' x [1, 1, 2] itself and log_std = x's extra channel... here a
  fixed value per test, `log_std`."""
  log_std: float

  @nn.compact
  def __call__(self, x):
    mean = x.reshape(x.shape[:-3] + (2,))
    return mean, jnp.full_like(mean, self.log_std)


def _model(posterior, log_std=0.0, **prior_settings):
  prior = priors.PullbackPrior(priors.StandardNormalPrior(2), _Critic(), W, XI, **prior_settings)
  return models.VAE(encoder=_Encoder(log_std), decoder=_Decoder(), prior=prior,
                    posterior=posterior, likelihood=likelihoods.Bernoulli())


def _init(model):
  return model.init(jax.random.key(0), jnp.zeros((3, 1, 1, 2)), jax.random.key(1))


def _numpy_log_f(variables, z):
  """log N(z) - beta D(sigmoid(z)) in float64 from the critic's parameters."""
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), variables['params']['prior']['discriminator'])
  g = 1 / (1 + np.exp(-z))
  h = np.tanh(g @ p['a']['kernel'] + p['a']['bias'])
  d = (h @ p['v']['kernel'] + p['v']['bias'])[..., 0]
  return -0.5 * np.sum(z ** 2, -1) - math.log(2 * math.pi) - BETA * d


GRID = np.linspace(-8, 8, 801)
STEP = GRID[1] - GRID[0]


def _grid_points():
  zz = np.stack(np.meshgrid(GRID, GRID, indexing='ij'), -1)
  return zz.reshape(-1, 2)


def _integral_of_f(variables, box=None):
  """Trapezoid rule of f over the grid (or over a box [(lo, hi), (lo, hi)] with a grid of its own)."""
  if box is None:
    xs = ys = GRID
  else:
    xs, ys = np.linspace(*box[0], 401), np.linspace(*box[1], 401)
  zz = np.stack(np.meshgrid(xs, ys, indexing='ij'), -1)
  f = np.exp(_numpy_log_f(variables, zz.reshape(-1, 2))).reshape(len(xs), len(ys))
  return np.trapezoid(np.trapezoid(f, ys, axis=1), xs)


def test_log_prob_matches_numpy_and_integrates_to_one_with_the_true_partition_function():
  model = _model(posteriors.GaussianPosterior())
  variables = _init(model)
  assert float(model.apply(variables, method=lambda m: m.prior.beta())) == pytest.approx(BETA,
                                                                                          rel=1e-6)
  z = _grid_points()
  log_f = np.asarray(model.apply(variables, jnp.asarray(z, jnp.float32),
                                 method=lambda m, z_: m.prior.log_unnormalized(z_, m.prior_context())),
                     np.float64)
  np.testing.assert_allclose(log_f, _numpy_log_f(variables, z), atol=2e-4)
  log_z = math.log(_integral_of_f(variables))
  assert abs(log_z) > 0.05  # Z differs from 1: the test sees whether log Z is subtracted.
  # The stored log Z (0 at init) is what log_prob subtracts; with the true one p integrates to 1.
  variables = normalizer.set_log_z(variables, log_z)
  log_p = np.asarray(model.apply(variables, jnp.asarray(z, jnp.float32),
                                 method=lambda m, z_: m.prior_log_prob(z_)), np.float64)
  np.testing.assert_allclose(np.sum(np.exp(log_p)) * STEP ** 2, 1.0, atol=2e-3)


def test_sampling_with_step_size_adaptation_reaches_the_prior_where_the_codes_fixed_size_cannot():
  """sample_prior's MALA chains from N(0, I): with a step size far too small (the code keeps its
  size fixed) they stay near their start; with `mala_adapt_steps` the size is tuned first and the
  chains' mean is p's, from the grid integral of f."""
  variables = _init(_model(posteriors.GaussianPosterior()))
  z = _grid_points()
  f = np.exp(_numpy_log_f(variables, z))
  true_mean = (f[:, None] * z).sum(0) / f.sum()
  base_mean = np.zeros(2)
  num_chains = 2000
  # The chains' mean has a standard error of about sqrt(Var_p z / num_chains) < 0.03 per coordinate.
  assert np.abs(true_mean - base_mean).max() > 0.2, true_mean  # The test can tell the two apart.

  def chain_mean(adapt_steps):
    model = _model(posteriors.GaussianPosterior(), mala_steps=200, mala_step_size=1e-4,
                   sample_start='base', mala_adapt_steps=adapt_steps)
    samples = model.apply(variables, jax.random.key(5), num_chains, method=model.sample_prior)
    return np.asarray(samples, np.float64).mean(0)

  # log a grows by at most 0.05 (1 - 0.574) per adaptation step: from 1e-4 to ~1 in ~430 steps.
  np.testing.assert_allclose(chain_mean(600), true_mean, atol=0.1)
  # 200 steps of 1e-4: a drift of 0.02 grad log f, a diffusion of std 0.2.
  np.testing.assert_allclose(chain_mean(0), base_mean, atol=0.1)
  from vaeprior_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  mc = config_lib.defaults().model
  mc.update(prior='pullback', latent_dim=2, pullback_mala_adapt_steps=7)
  assert priors.from_config(mc, (28, 28, 1)).mala_adapt_steps == 7
  mc.pullback_mala_adapt_steps = -1
  with pytest.raises(ValueError, match=r'model.pullback_mala_adapt_steps must be an integer >= 0 '
                     r'\(0: a fixed step size\), got -1'):
    priors.from_config(mc, (28, 28, 1))


def test_prior_based_estimate_is_unbiased_with_an_honest_standard_error():
  model = _model(posteriors.GaussianPosterior())
  variables = _init(model)
  true_log_z = math.log(_integral_of_f(variables))
  big = normalizer.prior_log_z(model, variables, jax.random.key(2), 200_000, chunk_size=20_000)
  assert big['num_samples'] == 200_000
  assert abs(big['log_z'] - true_log_z) < 4 * big['log_z_stderr'] + 1e-4, (big, true_log_z)
  small = [normalizer.prior_log_z(model, variables, jax.random.key(10 + i), 500, chunk_size=250)
           for i in range(30)]
  spread = np.std([s['log_z'] for s in small])
  reported = np.mean([s['log_z_stderr'] for s in small])
  assert 0.6 < reported / spread < 1.6, (reported, spread)


def test_check_against_prior_flags_a_low_log_z_and_rarely_a_right_one():
  """`normalizer.check_against_prior` against the true log Z (quadrature), with prior-based estimates
  made here in NumPy from f: a log Z 5 nats too low is flagged with a deficit below the true 5; the
  true log Z is flagged in at most ~5% of small, heavy-tailed estimates (Markov's guarantee)."""
  variables = _init(_model(posteriors.GaussianPosterior()))
  true_log_z = math.log(_integral_of_f(variables))
  rng = np.random.default_rng(0)

  def prior_estimate(n):
    eps = rng.standard_normal((n, 2))
    log_w = _numpy_log_f(variables, eps) + 0.5 * np.sum(eps ** 2, -1) + math.log(2 * math.pi)
    top = log_w.max()
    return {'log_z': float(top + np.log(np.mean(np.exp(log_w - top)))), 'log_z_stderr': 0.0,
            'num_samples': n}

  evaluation = {'log_z': true_log_z - 5.0, 'nll': 100.0, 'elbo': -110.0}
  out = normalizer.check_against_prior(evaluation, prior_estimate(100_000))
  assert 0.0 < out['log_z_deficit_95'] < 5.0, out
  gap = out['log_z_prior'] - evaluation['log_z']
  assert out['nll_with_prior_log_z'] == pytest.approx(100.0 + gap)
  assert out['elbo_with_prior_log_z'] == pytest.approx(-110.0 - gap)
  flagged = [normalizer.check_against_prior(dict(evaluation, log_z=true_log_z),
                                           prior_estimate(5))['log_z_deficit_95'] > 0
             for _ in range(400)]
  assert np.mean(flagged) <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 400), np.mean(flagged)


def _posterior_estimates(model, variables, images, num_train, seeds, samples=400):
  mesh = Mesh(np.array(jax.devices()[:1]), ('data',))
  fn = normalizer.posterior_log_z_fn(model, samples, 100)
  return [normalizer.posterior_log_z(model, variables, images, jax.random.key(s), mesh, num_train,
                                    samples, 100, batch_size=len(images), batch_fn=fn)
          for s in seeds]


def test_posterior_based_estimate_with_truncated_posteriors_has_the_expectation_of_its_boxes():
  """E[Z^] = sum_j integral of f over q(.|x_j)'s box (num_train = number of images): above Z where
  wide boxes overlap over f's mass, below it where a narrow box leaves mass out."""
  t = 2.0
  for log_std, centres, relation in ((math.log(2.0), [[0.0, 0.0], [0.3, -0.2], [-0.2, 0.1]], 'above'),
                                     (math.log(0.4), [[0.5, 0.5]], 'below')):
    model = _model(posteriors.TruncatedGaussianPosterior(t), log_std)
    variables = _init(model)
    sigma = math.exp(log_std)
    expected = sum(_integral_of_f(variables, [(c[0] - t * sigma, c[0] + t * sigma),
                                              (c[1] - t * sigma, c[1] + t * sigma)])
                   for c in centres)
    true_z = _integral_of_f(variables)
    images = np.asarray(centres, np.float32).reshape(-1, 1, 1, 2)
    est = _posterior_estimates(model, variables, images, len(centres), [3], samples=20_000)[0]
    assert abs(est['log_z'] - math.log(expected)) < 4 * est['log_z_stderr'] + 2e-3, (est, expected)
    if relation == 'above':
      assert expected > 2 * true_z
    else:
      assert expected < 0.9 * true_z


def test_posterior_based_spread_shrinks_as_q_approaches_p_and_truncation_tames_it():
  """One 'image' whose q(z|x) is N(m, s^2): the estimate's spread over seeds is smaller with (m, s)
  matched to p's moments than with a q far from p; with the untruncated normal the spread is larger
  than with the truncated one at the same (m, s)."""
  base = _model(posteriors.GaussianPosterior())
  variables = _init(base)
  z = _grid_points()
  p = np.exp(_numpy_log_f(variables, z))
  p /= p.sum()
  m = (p[:, None] * z).sum(0)
  s = float(np.sqrt(((p[:, None] * (z - m) ** 2).sum(0)).mean()))
  image = m.astype(np.float32).reshape(1, 1, 1, 2)
  far = (m + 1.0).astype(np.float32).reshape(1, 1, 1, 2)

  def spread(posterior, log_std, images):
    model = _model(posterior, log_std)
    v = _init(model)
    return np.std([e['log_z'] for e in _posterior_estimates(model, v, images, 1, range(20))])

  close = spread(posteriors.TruncatedGaussianPosterior(2.0), math.log(s), image)
  away = spread(posteriors.TruncatedGaussianPosterior(2.0), math.log(0.5 * s), far)
  plain = spread(posteriors.GaussianPosterior(), math.log(0.5 * s), far)
  assert close < away < plain, (close, away, plain)


def test_truncated_gaussian_posterior_density_and_samples():
  q = posteriors.TruncatedGaussianPosterior(2.0)
  mean, log_std = jnp.array([[0.5, -1.0]]), jnp.array([[math.log(0.5), 0.0]])
  keys = jax.random.split(jax.random.key(0), 20_000)
  z, log_q = jax.vmap(lambda k: q.apply({}, mean, log_std, k, method='sample_and_log_prob'))(keys)
  z = np.asarray(z)[:, 0]
  std = np.exp(np.asarray(log_std)[0])
  assert np.all(np.abs(z - np.asarray(mean)[0]) <= 2 * std + 1e-6)
  # The truncated N(0, 1) on [-2, 2] has variance 1 - 4 phi(2) / (Phi(2) - Phi(-2)).
  var = 1 - 4 * math.exp(-2) / math.sqrt(2 * math.pi) / math.erf(2 / math.sqrt(2))
  np.testing.assert_allclose(z.var(0), var * std ** 2, rtol=0.04)
  np.testing.assert_allclose(np.asarray(log_q)[:, 0], np.asarray(
      q.apply({}, jnp.asarray(z), mean, log_std, method='log_prob')), rtol=1e-5, atol=1e-5)
  # The density integrates to 1 over its box (grid), and is -inf outside it.
  xs = np.linspace(0.5 - 1.0, 0.5 + 1.0, 401)
  ys = np.linspace(-3.0, 1.0, 401)
  zz = np.stack(np.meshgrid(xs, ys, indexing='ij'), -1).reshape(-1, 2)
  dens = np.exp(np.asarray(q.apply({}, jnp.asarray(zz, jnp.float32), mean, log_std,
                                   method='log_prob'), np.float64)).reshape(401, 401)
  np.testing.assert_allclose(np.trapezoid(np.trapezoid(dens, ys, axis=1), xs), 1.0, atol=5e-3)
  assert np.isneginf(float(q.apply({}, jnp.array([[3.0, 0.0]]), mean, log_std, method='log_prob')[0]))


def test_vaepp_model_from_config_builds_samples_and_regularises_the_residual_blocks():
  from vaeprior_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  from vaeprior_jax.methods import objectives  # pylint: disable=g-import-not-at-top
  mc = config_lib.defaults().model
  mc.update(net='vaepp', prior='pullback', posterior='truncated_gaussian', latent_dim=3,
            pullback_mala_steps=2, pullback_weight=10.0)
  model = models.create(mc, (28, 28, 1))
  x = jnp.full((2, 28, 28, 1), 0.5)
  # Each call jitted: one compilation costs less than dispatching these nets op by op.
  variables = jax.jit(model.init)(jax.random.key(0), x, jax.random.key(1))
  assert set(variables) == {'params', 'partition'}
  assert float(variables['params']['prior']['xi']) == 0.0
  apply = lambda m, method, *args: jax.jit(functools.partial(m.apply, method=method))(variables,
                                                                                     *args)
  terms = apply(model, model.log_weight_terms, x, jax.random.key(2))
  assert all(np.all(np.isfinite(v)) for v in terms.values())
  # The zero-initialised last layers: the decoder mean starts at sigmoid(0) = 1/2 (the code's
  # tanh_clip at 1e-7, with no gradient: the decoder could never learn).
  recon = apply(model, model.reconstruct, x, jax.random.key(3))
  np.testing.assert_allclose(recon, 0.5, rtol=1e-6)
  mc_code = config_lib.complete_section(dict(mc.to_dict(), vaepp_mean_activation='tanh_clip'),
                                        'model')
  code_model = models.create(mc_code, (28, 28, 1))
  np.testing.assert_allclose(apply(code_model, code_model.reconstruct, x, jax.random.key(3)), 1e-7,
                             rtol=1e-3)
  grads = jax.jit(jax.grad(lambda p: -jnp.sum(code_model.apply(
      {**variables, 'params': p}, x, jax.random.key(2), method=code_model.log_weight_terms)[
          'log_px_z'])))(variables['params'])
  assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(grads['decoder']))
  samples = jax.jit(lambda v, k: model.apply(v, k, 3, method=model.sample_prior))(
      variables, jax.random.key(4))
  assert samples.shape == (3, 3)
  l2_leaves = []
  for path, _ in jax.tree_util.tree_flatten_with_path(variables['params'])[0]:
    names = [getattr(k, 'key', '') for k in path]
    if names[-1] == 'kernel' and any(str(n).startswith('hidden') for n in names[:-1]):
      l2_leaves.append('/'.join(names[:2]))
  # The residual blocks of the encoder, the decoder and the discriminator, and the latent WGAN's
  # hidden layers; no other dense layer.
  assert set(l2_leaves) == {'encoder/hidden_0', 'encoder/hidden_1', 'encoder/hidden_2',
                            'decoder/hidden_0', 'decoder/hidden_1', 'decoder/hidden_2',
                            'prior/discriminator', 'prior/latent_generator', 'prior/latent_critic'}
  assert float(objectives.l2_penalty(variables['params'])) > 0
  with pytest.raises(ValueError, match='model.prior=pullback needs a one-level model'):
    models.create(config_lib.complete_section(dict(mc.to_dict(), net='hvae'), 'model'), (28, 28, 1))
  with pytest.raises(ValueError, match="Unknown model.discriminator 'nope'"):
    models.create(config_lib.complete_section(dict(mc.to_dict(), discriminator='nope'), 'model'),
                  (28, 28, 1))


@pytest.mark.parametrize('net,shape,scale,latent,critic_features', [
    ('vaepp_cifar', (32, 32, 3), 'per_pixel', 128, 4 * 4 * 256),
    ('vaepp_sampling', (32, 32, 3), 'scalar', 16, 8 * 8 * 64),
    ('vaepp_sampling', (64, 64, 3), 'scalar', 16, 8 * 8 * 64)])
def test_vaepp_colour_nets_have_the_codes_shapes_and_start_at_its_values(net, shape, scale, latent,
                                                                        critic_features):
  """The colour nets of VAEPP's code (vaepp_nets' docstring): the encoder's heads and the decoder's
  start at exactly 0 (zero-initialised kernels: q = N(0, I), the image mean 127.5 / 255 everywhere);
  the decoder emits 2C channels for per-pixel log-scales, C and one 'log_scale' for the scalar one;
  the critic flattens the code's 4x4x256 or 8x8x64 features; the ELBO is finite; bad settings are
  named before any compilation."""
  from vaeprior_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  mc = config_lib.defaults().model
  mc.update(net=net, discriminator=net, prior='pullback', posterior='truncated_gaussian',
            likelihood='discretized_logistic', logistic_scale=scale, latent_dim=latent,
            vaepp_min_log_std=-3.0, pullback_weight=1000.0)
  model = models.create(mc, shape)
  x = jnp.asarray(np.random.default_rng(0).integers(0, 256, (2,) + shape) / 255.0, jnp.float32)
  variables = model.init(jax.random.key(0), x, jax.random.key(1), method=model.elbo)
  mean, log_std = model.apply(variables, x, method=lambda m, x_: m.encoder(x_))
  assert mean.shape == (2, latent)
  np.testing.assert_array_equal(mean, 0.0)
  np.testing.assert_array_equal(log_std, 0.0)
  out = model.apply(variables, mean, method=lambda m, z: m.decoder(z))
  assert out.shape == (2,) + shape[:2] + (6 if scale == 'per_pixel' else 3,)
  np.testing.assert_allclose(model.apply(variables, out, method=lambda m, o: m.observation_mean(o)),
                             127.5 / 255.0, rtol=1e-6)
  assert ('likelihood' in variables['params']) == (scale == 'scalar')
  critic = variables['params']['prior']['discriminator']
  assert critic['dense']['kernel'].shape == (critic_features, 64)
  assert np.all(np.isfinite(model.apply(variables, x, jax.random.key(2), method=model.elbo)))
  with pytest.raises(ValueError, match='discretized_logistic'):
    models.create(config_lib.complete_section(dict(mc.to_dict(), likelihood='bernoulli'), 'model'),
                  shape)
  if net == 'vaepp_cifar':
    with pytest.raises(ValueError, match='multiple of 64'):
      models.create(config_lib.complete_section(dict(mc.to_dict(), latent_dim=100), 'model'), shape)
  else:
    with pytest.raises(ValueError, match='32x32'):
      models.create(mc, (28, 28, 3))


def _residual_block_params(c_in: int, c_out: int, stride: int, kernel: int = 3) -> int:
  """Parameters of a pre-activation residual block (two k x k convolutions with biases, and a 1x1
  shortcut with bias where the channels or the stride change), counted by hand."""
  count = kernel * kernel * c_in * c_out + c_out + kernel * kernel * c_out * c_out + c_out
  return count + (c_in * c_out + c_out if c_in != c_out or stride != 1 else 0)


def _stack_params(c_in: int, blocks) -> int:
  total = 0
  for c_out, stride in blocks:
    total, c_in = total + _residual_block_params(c_in, c_out, stride), c_out
  return total


def test_conv_latent_wgan_has_the_colour_scripts_layers_and_trains_through_its_penalty():
  """The latent WGAN of dmm_cifar10.py / dmm_for_sampling.py (G_omega, D_kappa), as the colour
  configs build it: eps of size 128 -> Dense[4x4x256] -> DeRes 256, 256, 128 (x2), 64, 32, 16 ->
  Conv1x1[d/64] (zero-initialised, so it starts at z = 0); the critic sees z as an 8x8x(d/64) map ->
  Res 16, 32, 64, 128 (/2), 256 (/2), 256 (/2) -> Dense[64] -> Dense[1]. Parameter counts from the
  scripts' layer lists, by hand; the WGAN-div penalty's double backprop reaches every critic layer."""
  from experiments.configs import vaepp as vaepp_configs  # pylint: disable=g-import-not-at-top
  from vaeprior_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  from vaeprior_jax.priors.pullback import latent_gan  # pylint: disable=g-import-not-at-top
  from vaeprior_jax.priors.pullback import penalties  # pylint: disable=g-import-not-at-top
  mc = config_lib.complete_section(vaepp_configs.get_config('vaepp,cifar10').model, 'model')
  latent, channels = 1024, 16
  assert mc.latent_dim == latent and mc.latent_gan_net == 'conv'
  prior = priors.from_config(mc, (32, 32, 3))
  assert prior.noise_dim == 128
  generator, critic = prior.latent_generator, prior.latent_critic
  eps = jax.random.normal(jax.random.key(0), (4, 128))
  g_vars = generator.init(jax.random.key(1), eps)
  z = generator.apply(g_vars, eps)
  assert z.shape == (4, latent)
  np.testing.assert_array_equal(z, 0.0)
  count = lambda tree: sum(x.size for x in jax.tree.leaves(tree))
  assert count(g_vars) == (128 * 4096 + 4096 + _stack_params(
      256, [(256, 1), (256, 1), (128, 2), (64, 1), (32, 1), (16, 1)]) + 16 * channels + channels)
  z = jax.random.normal(jax.random.key(2), (4, latent))
  c_vars = critic.init(jax.random.key(3), z)
  assert critic.apply(c_vars, z).shape == (4, 1)
  assert c_vars['params']['dense']['kernel'].shape == (256, 64)  # 8x8 -> 4 -> 2 -> 1
  assert count(c_vars) == (_stack_params(channels, [(16, 1), (32, 1), (64, 1), (128, 2), (256, 2),
                                                    (256, 2)]) + 256 * 64 + 64 + 64 + 1)
  real = jax.random.normal(jax.random.key(4), (4, latent))

  def loss(params):
    d = lambda v: critic.apply({'params': params}, v)[..., 0]
    return (latent_gan.critic_loss(d, real, z)
            + penalties.gradient_penalty(d, real, z, jax.random.key(5), 'wgan_div_1'))

  grads = jax.jit(jax.grad(loss))(c_vars['params'])
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
  assert all(float(jnp.abs(grads[layer]['conv_0']['kernel']).max()) > 0
             for layer in ('hidden_0', 'hidden_5'))
  with pytest.raises(ValueError, match='latent_gan_net=conv sees z as an 8x8 map: .* got 100'):
    priors.from_config(config_lib.complete_section(dict(mc.to_dict(), latent_dim=100), 'model'),
                       (32, 32, 3))
  with pytest.raises(ValueError, match="Unknown model.latent_gan_net 'cnn'; allowed: mlp, conv"):
    priors.from_config(config_lib.complete_section(dict(mc.to_dict(), latent_gan_net='cnn'),
                                                   'model'), (32, 32, 3))
  celeb_a = vaepp_configs.get_config('vaepp,celeb_a').model  # The sampling nets: z of size 128.
  assert celeb_a.latent_gan_net == 'conv' and latent_gan.conv_map_shape(celeb_a.latent_dim) == (
      8, 8, 2)
  grey = vaepp_configs.get_config('vaepp,static_mnist').model
  assert grey.latent_gan_net == 'mlp' and grey.latent_gan_noise_dim == 0


def test_the_algorithm_1_colour_scripts_latent_critic_ends_on_the_4x4_map():
  """`model.latent_gan_net=conv_4x4` (dmm_cifar10_nD.py, the `naive,cifar10` entry): the critic's
  last two residual blocks do not stride, so its Dense[64] reads 4 x 4 x 256 features; the
  generator is `conv`'s. Parameters counted by hand, on a latent of 64 (an 8x8x1 map)."""
  from experiments.configs import vaepp as vaepp_configs  # pylint: disable=g-import-not-at-top
  from vaeprior_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  from vaeprior_jax.priors.pullback import latent_gan  # pylint: disable=g-import-not-at-top
  mc = config_lib.complete_section(vaepp_configs.get_config('naive,cifar10').model, 'model')
  assert mc.latent_gan_net == 'conv_4x4'
  prior = priors.from_config(
      config_lib.complete_section(dict(mc.to_dict(), latent_dim=64), 'model'), (32, 32, 3))
  assert isinstance(prior.latent_generator, latent_gan.ConvGenerator)
  critic = prior.latent_critic
  z = jax.random.normal(jax.random.key(0), (3, 64))
  variables = critic.init(jax.random.key(1), z)
  assert critic.apply(variables, z).shape == (3, 1)
  assert variables['params']['dense']['kernel'].shape == (4 * 4 * 256, 64)  # 8x8 -> 4 -> 4 -> 4
  count = sum(x.size for x in jax.tree.leaves(variables))
  assert count == (_stack_params(1, [(16, 1), (32, 1), (64, 1), (128, 2), (256, 1), (256, 1)])
                   + 4096 * 64 + 64 + 64 + 1)


def test_ais_bounds_on_the_prior_sandwich_its_quadrature():
  """`normalizer.ais_log_z_bounds` through the model (beta D(G(z)) with G the decoder mean) against
  the trapezoid rule of f; a prior on another base is refused by name."""
  from vaeprior_jax.priors.pullback import ais  # pylint: disable=g-import-not-at-top
  model = _model(posteriors.GaussianPosterior())
  variables = _init(model)
  truth = math.log(_integral_of_f(variables))
  settings = ais.Settings(num_chains=128, num_temperatures=100, pilot_chains=32, sampler_steps=400,
                          sampler_kept=50)
  result = normalizer.ais_log_z_bounds(model, variables, jax.random.key(5), settings)
  for bound, sign in (('log_z_lower', 1), ('log_z_upper', -1)):
    assert sign * (result[bound] - truth) < 4 * result[bound + '_stderr'] + 0.01, (bound, truth)
    assert abs(result[bound] - truth) < 4 * result[bound + '_stderr'] + 0.02
  assert result['log_z_lower_mean'] <= truth <= result['log_z_upper_mean']
  assert result['sampler']['rhat_energy'] < 1.1
  other = models.VAE(encoder=_Encoder(0.0), decoder=_Decoder(), likelihood=likelihoods.Bernoulli(),
                     posterior=posteriors.GaussianPosterior(),
                     prior=priors.PullbackPrior(_Mixture(2), _Critic(), W, XI))
  with pytest.raises(ValueError, match='need model.pullback_base=standard, got a _Mixture'):
    normalizer.ais_log_z_bounds(other, variables, jax.random.key(5), settings)


class _Mixture(nn.Module):
  """A base other than the standard normal (the AIS path refuses it before using it)."""
  latent_dim: int


def test_the_mlp_latent_generator_ends_in_a_weight_normed_leaky_relu_layer_as_the_code():
  """G_omega's last Dense sits in the same arg_scope as its hidden ones (weight norm, leaky ReLU);
  D_kappa's last is linear. Checked against a hand computation from the parameters."""
  from vaeprior_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  from vaeprior_jax.priors.pullback import latent_gan  # pylint: disable=g-import-not-at-top
  eps = jax.random.normal(jax.random.key(0), (64, 3))
  for out_activation in (True, False):
    mlp = latent_gan.MLP((4,), 3, out_activation=out_activation)
    params = mlp.init(jax.random.key(1), eps)['params']
    got = mlp.apply({'params': params}, eps)

    def wn(name, x):
      kernel = params[name]['kernel']
      scale = [v for k, v in params.items() if k.startswith('WeightNorm') and
               f'{name}/kernel/scale' in v][0][f'{name}/kernel/scale']
      return x @ (kernel / jnp.linalg.norm(kernel, axis=0) * scale) + params[name]['bias']

    h = jax.nn.leaky_relu(wn('hidden_0', eps), 0.2)
    expected = (jax.nn.leaky_relu(wn('out', h), 0.2) if out_activation else
                h @ params['out']['kernel'] + params['out']['bias'])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
  prior = priors.from_config(config_lib.complete_section(dict(
      prior='pullback', latent_dim=3, discriminator='vaepp'), 'model'), (28, 28, 1))
  assert prior.latent_generator.out_activation and prior.latent_generator.weight_norm
  assert not prior.latent_critic.out_activation
