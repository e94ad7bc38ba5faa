"""Observation models p(x|z) given the decoder's output `out`: `log_prob(x, out) -> [...]`, summed over
the last `event_ndims` axes of x (3 for images [H, W, C], 1 for vectors [d]), and `mean(out)`, E[x|z].

`model.likelihood` chooses one by name (`REGISTRY`):
  bernoulli  out = logits, log p = x l - softplus(l); exact for x in {0, 1}, and the cross-entropy of
             continuous targets x in [0, 1] (Dai & Wipf's "cross-entropy" baseline).
  gaussian   x ~ N(mean(out), gamma^2 I) with one scalar gamma, the standard deviation: learned as the
             parameter 'log_gamma' (`model.learn_gamma=True`, starting at `model.log_gamma`) or fixed at
             exp(`model.log_gamma`). `model.mean_activation` maps `out` to the mean: 'identity' or
             'sigmoid' (Dai & Wipf's decoders end with a sigmoid).

Dai & Wipf's code learns gamma as a standard deviation (loggamma, initialised at 0); the paper writes
the covariance as gamma I (a variance). Here gamma is the standard deviation, as in the code.
"""

import math
from typing import Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from vaeprior_jax import config as config_lib
from vaeprior_jax import distributions
from vaeprior_jax import registry

Array = jax.Array
_LOG_2PI = math.log(2.0 * math.pi)

MEAN_ACTIVATIONS = {'identity': lambda out: out, 'sigmoid': jax.nn.sigmoid}


def _event_axes(event_ndims: int) -> Tuple[int, ...]:
  return tuple(range(-event_ndims, 0))


class Bernoulli(nn.Module):
  """x in {0, 1} (or a target in [0, 1]), p(x = 1) = sigmoid(logits)."""
  event_ndims: int = 3

  def log_prob(self, x: Array, logits: Array) -> Array:
    return distributions.bernoulli_log_prob(x, logits, event_ndims=self.event_ndims)

  def mean(self, logits: Array) -> Array:
    return jax.nn.sigmoid(logits)


class Gaussian(nn.Module):
  """x ~ N(mean(out), gamma^2 I), gamma = exp(log_gamma) one scalar standard deviation.

  Fixed at `log_std` unless `learn_gamma`, in which case 'log_gamma' is a parameter starting at
  `log_std` and receiving gradients like any other (no clamp, as Dai & Wipf's code).
  """
  log_std: float = 0.0
  learn_gamma: bool = False
  event_ndims: int = 3
  mean_activation: str = 'identity'

  def setup(self):
    if self.learn_gamma:
      self.learned_log_gamma = self.param('log_gamma', nn.initializers.constant(self.log_std), (),
                                          jnp.float32)

  def _log_gamma(self) -> Array:
    if self.learn_gamma:
      return self.learned_log_gamma
    return jnp.asarray(self.log_std, jnp.float32)

  def log_prob(self, x: Array, out: Array) -> Array:
    log_gamma = self._log_gamma()
    eps = (x - self.mean(out)) * jnp.exp(-log_gamma)
    return -0.5 * jnp.sum(jnp.square(eps) + _LOG_2PI + 2.0 * log_gamma,
                          axis=_event_axes(self.event_ndims))

  def mean(self, out: Array) -> Array:
    if self.mean_activation not in MEAN_ACTIVATIONS:
      raise ValueError(f'Unknown mean_activation {self.mean_activation!r}; allowed: '
                       f'{", ".join(MEAN_ACTIVATIONS)}.')
    return MEAN_ACTIVATIONS[self.mean_activation](out)

  def gamma(self) -> Array:
    """The standard deviation gamma (call inside `apply`)."""
    return jnp.exp(self._log_gamma())


# Builders: (model_config, event_shape) -> module. `model_config` is the `config.model` section.
REGISTRY = registry.Registry('model.likelihood')


@REGISTRY.register('bernoulli')
def _bernoulli(model_config, event_shape) -> nn.Module:
  del model_config
  return Bernoulli(event_ndims=len(event_shape))


@REGISTRY.register('gaussian')
def _gaussian(model_config, event_shape) -> nn.Module:
  activation = model_config.mean_activation
  if activation not in MEAN_ACTIVATIONS:
    raise ValueError(f'Unknown model.mean_activation {activation!r}; allowed: '
                     f'{", ".join(MEAN_ACTIVATIONS)}.')
  return Gaussian(log_std=float(model_config.log_gamma), learn_gamma=bool(model_config.learn_gamma),
                  event_ndims=len(event_shape), mean_activation=activation)


def create(model_config, event_shape) -> nn.Module:
  """The likelihood named by `model_config.likelihood` for x of `event_shape` (missing keys from
  `config.defaults`)."""
  model_config = config_lib.complete_section(model_config, 'model')
  return REGISTRY.get(model_config.likelihood)(model_config, tuple(event_shape))
