"""Observation models p(x|z) given the decoder's output: `log_prob(x, out) -> [...]` summed over the
image axes [H, W, C], and `mean(out)`, the mean of x.

The binarized-image models of Xu et al. and Tomczak & Welling use `Bernoulli` (decoder output: logits).
`Gaussian` (decoder output: the mean; a fixed standard deviation) serves linear-Gaussian checks of the
estimators, whose marginal likelihood is known in closed form.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from vaeprior_jax import distributions

Array = jax.Array
_LOG_2PI = math.log(2.0 * math.pi)


class Bernoulli(nn.Module):
  """x in {0, 1}, p(x = 1) = sigmoid(logits)."""

  def log_prob(self, x: Array, logits: Array) -> Array:
    return distributions.bernoulli_log_prob(x, logits, event_ndims=3)

  def mean(self, logits: Array) -> Array:
    return jax.nn.sigmoid(logits)


class Gaussian(nn.Module):
  """x ~ N(out, exp(2 log_std) I) with a fixed log_std."""
  log_std: float = 0.0

  def log_prob(self, x: Array, mean: Array) -> Array:
    eps = (x - mean) * math.exp(-self.log_std)
    return -0.5 * jnp.sum(jnp.square(eps) + _LOG_2PI + 2.0 * self.log_std, axis=(-3, -2, -1))

  def mean(self, mean: Array) -> Array:
    return mean
