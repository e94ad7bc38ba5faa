"""Gradient penalties (`vaeprior_jax.priors.pullback.penalties`) against a hand computation in NumPy (float64) on a
one-hidden-layer critic whose input gradient has a closed form."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vaeprior_jax.priors.pullback import penalties

SHAPE = (2, 2, 1)  # Tiny images.
HIDDEN = 5


def _params(seed=0):
  r = np.random.default_rng(seed)
  return {'w1': r.normal(size=(4, HIDDEN)).astype(np.float32),
          'b1': r.normal(size=HIDDEN).astype(np.float32),
          'w2': r.normal(size=HIDDEN).astype(np.float32)}


def _critic(params):
  """D(x) = w2 . tanh(W1^T vec(x) + b1), [B, 2, 2, 1] -> [B]."""
  return lambda x: jnp.tanh(x.reshape(x.shape[0], -1) @ params['w1'] + params['b1']) @ params['w2']


def _grad_norms_by_hand(params, x):
  """|grad D(x_i)| from the closed form W1 (w2 * (1 - tanh^2(W1^T x + b1))), float64."""
  p = {k: np.asarray(v, np.float64) for k, v in params.items()}
  x = np.asarray(x, np.float64).reshape(len(x), -1)
  h = np.tanh(x @ p['w1'] + p['b1'])
  grads = (p['w2'] * (1 - h ** 2)) @ p['w1'].T
  return np.linalg.norm(grads, axis=-1)


def _by_hand(kind, params, real, fake, rng, weight, k):
  u = np.asarray(jax.random.uniform(rng, (real.shape[0], 1, 1, 1)), np.float64)
  mid = fake + u * (real - fake)
  if kind == 'wgan_gp':
    return weight * np.mean(np.abs(_grad_norms_by_hand(params, mid) - 1) ** k)
  if kind == 'wgan_div_1':
    return weight * np.mean(_grad_norms_by_hand(params, mid) ** k)
  return weight / 2 * (np.mean(_grad_norms_by_hand(params, real) ** k)
                       + np.mean(_grad_norms_by_hand(params, fake) ** k))


def _data():
  r = np.random.default_rng(1)
  real = r.uniform(size=(6,) + SHAPE).astype(np.float32)
  fake = r.uniform(size=(6,) + SHAPE).astype(np.float32)
  return real, fake


@pytest.mark.parametrize('kind, exponent, weight', [
    ('wgan_gp', None, None), ('wgan_div_1', None, None), ('wgan_div_2', None, None),
    ('wgan_div_1', 6.0, 2.0), ('wgan_gp', 2.0, 3.0)])
def test_each_penalty_equals_the_hand_computation(kind, exponent, weight):
  params, (real, fake), rng = _params(), _data(), jax.random.key(3)
  got = penalties.gradient_penalty(_critic(params), jnp.asarray(real), jnp.asarray(fake), rng,
                                   kind, weight, exponent)
  expected = _by_hand(kind, params, real, fake, rng,
                      penalties.DEFAULT_WEIGHTS[kind] if weight is None else weight,
                      penalties.CODE_EXPONENTS[kind] if exponent is None else exponent)
  assert expected > 1e-3  # A penalty the check can see.
  np.testing.assert_allclose(float(got), expected, rtol=2e-5)


def test_code_defaults_and_weights():
  # The authors' code: interpolates |g|^(6/2), real-and-fake (|g|^2)^(6/2); WGAN-GP (|g| - 1)^2.
  assert penalties.CODE_EXPONENTS == {'wgan_gp': 2.0, 'wgan_div_1': 3.0, 'wgan_div_2': 6.0}
  assert penalties.DEFAULT_WEIGHTS == {'wgan_gp': 10.0, 'wgan_div_1': 2.0, 'wgan_div_2': 2.0}


@pytest.mark.parametrize('kind', penalties.KINDS)
def test_the_penalty_is_differentiable_in_the_critic_parameters(kind):
  """Double backprop: jax.grad of the penalty with respect to W1 equals central differences of the
  hand computation (float64)."""
  params, (real, fake), rng = _params(2), _data(), jax.random.key(4)
  grad = jax.grad(lambda p: penalties.gradient_penalty(_critic(p), jnp.asarray(real),
                                                       jnp.asarray(fake), rng, kind))(params)
  eps = 1e-5
  weight, k = penalties.DEFAULT_WEIGHTS[kind], penalties.CODE_EXPONENTS[kind]
  numeric = np.zeros((4, HIDDEN))
  for i in range(4):
    for j in range(HIDDEN):
      up = {n: np.asarray(v, np.float64).copy() for n, v in params.items()}
      down = {n: np.asarray(v, np.float64).copy() for n, v in params.items()}
      up['w1'][i, j] += eps
      down['w1'][i, j] -= eps
      numeric[i, j] = (_by_hand(kind, up, real, fake, rng, weight, k)
                       - _by_hand(kind, down, real, fake, rng, weight, k)) / (2 * eps)
  np.testing.assert_allclose(np.asarray(grad['w1']), numeric, rtol=1e-3, atol=1e-4)


def test_zero_gradient_is_not_nan_and_bad_arguments_are_named():
  zero_critic = lambda x: jnp.zeros(x.shape[0])
  x = jnp.ones((3,) + SHAPE)
  for kind in penalties.KINDS:
    g = jax.grad(lambda s: penalties.gradient_penalty(lambda v: s * zero_critic(v), x, x,
                                                      jax.random.key(0), kind))(1.0)
    assert np.isfinite(float(g))
  with pytest.raises(ValueError, match="Unknown gradient penalty 'wgan'; allowed: wgan_gp"):
    penalties.gradient_penalty(zero_critic, x, x, jax.random.key(0), 'wgan')
  with pytest.raises(ValueError, match='real and fake must have one shape'):
    penalties.gradient_penalty(zero_critic, x, x[:2], jax.random.key(0))
