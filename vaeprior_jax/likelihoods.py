"""Observation models p(x|z) given the decoder's output `out`: `log_prob(x, out) -> [...]`, summed over
the last `event_ndims` axes of x (3 for images [H, W, C], 1 for vectors [d]), and `mean(out)`, E[x|z].

`model.likelihood` chooses one by name (`REGISTRY`):
  bernoulli  out = logits, log p = x l - softplus(l); exact for x in {0, 1}, and the cross-entropy of
             continuous targets x in [0, 1] (Dai & Wipf's "cross-entropy" baseline).
  gaussian   x ~ N(mean(out), gamma^2 I) with one scalar gamma, the standard deviation: learned as the
             parameter 'log_gamma' (`model.learn_gamma=True`, starting at `model.log_gamma`) or fixed at
             exp(`model.log_gamma`). `model.mean_activation` maps `out` to the mean: 'identity' or
             'sigmoid' (Dai & Wipf's decoders end with a sigmoid).

  discretized_logistic
             PixelCNN++'s discretized logistic over the 256 pixel values (VAEPP on CIFAR-10 and CelebA):
             per-pixel log-scales from the decoder (`model.logistic_scale=per_pixel`: `out` has 2C
             channels, the mean's pre-activation then the log-scale) or one learned scalar log-scale
             (`scalar`, the VAEPP code's "uniform scale": `out` has C channels). See
             `DiscretizedLogistic`.

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
from vaeprior_jax import hooks
from vaeprior_jax import registry

Array = jax.Array

# This component's config keys and their defaults (`config.declare`).
config_lib.declare(
    'model.likelihood=gaussian|discretized_logistic',
    model=dict(
        learn_gamma=True,  # gaussian likelihood: learn the scalar standard deviation
        log_gamma=0.0,  # ... its initial (or fixed) log
        mean_activation='identity',  # ... the decoder output -> mean: identity | sigmoid
        logistic_scale='per_pixel',  # discretized_logistic: per_pixel (2C decoder channels) | scalar
        logistic_min_log_scale=-20.0,  # ... log-scales clipped below here (VAEPP's code)
    ),
)


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

  @staticmethod
  def squared_error(log_prob: Array, log_gamma: Array, size: int) -> Array:
    """sum((x - mean)^2) over an event of `size` values, recovered from its `log_prob` and
    log_gamma: log_prob = -0.5 (sum((x - mean)^2) / gamma^2 + size (log 2 pi + 2 log_gamma)).
    For a batch of ELBO terms this gives gamma's optimum with the decoder fixed,
    sqrt(mean(squared_error) / size), without a second decoder pass."""
    return jnp.exp(2.0 * log_gamma) * (-2.0 * log_prob - size * (_LOG_2PI + 2.0 * log_gamma))


class DiscretizedLogistic(nn.Module):
  """p(x|z) for 8-bit images x = k / 255 (k = 0..255): the mass of a logistic(mean, scale) over k's bin.

  It works in the coordinates of VAEPP's code (chenwenxiao/adversarial-prior-vae, `dmm_cifar10.py`,
  via tfsnippet's DiscretizedLogistic): u = (k - 127.5) / 128, bins of width 2/256 centred on the
  256 values, the first and last bins open to -inf and +inf. The mean is tanh of the decoder's output,
  the log-scale is clipped below at `min_log_scale` (-20). The probability of each pixel value does
  not depend on the coordinates, so log p is the usual discrete log-likelihood of the 8-bit image
  (bits/dim = -log p / (H W C ln 2)).

  log P(k) = log(sigmoid(b) - sigmoid(a)), a and b the bin's edges in units of the scale, computed as
  -softplus(-b) - softplus(a) + log(-expm1(a - b)), which is exact and finite wherever the scale is
  (PixelCNN++ and the code instead floor the difference of sigmoids, at 1e-12 or 1e-10).

  scale: 'per_pixel' (`out` [..., H, W, 2C]: the mean's pre-activation, then the log-scale) or
  'scalar' (`out` [..., H, W, C]; one parameter 'log_scale', starting at 0, as the code's
  `uniform_scale`).
  """
  scale: str = 'per_pixel'
  min_log_scale: float = -20.0
  event_ndims: int = 3

  SCALES = ('per_pixel', 'scalar')
  HALF_BIN = 1.0 / 256.0

  def setup(self):
    if self.scale not in self.SCALES:
      raise ValueError(f'Unknown discretized logistic scale {self.scale!r}; allowed: '
                       f'{", ".join(self.SCALES)}.')
    if self.scale == 'scalar':
      self.learned_log_scale = self.param('log_scale', nn.initializers.zeros, (), jnp.float32)

  def _split(self, out: Array, channels: int) -> Tuple[Array, Array]:
    """(mean in the code's coordinates, clipped log-scale) from the decoder output."""
    if self.scale == 'per_pixel':
      if out.shape[-1] != 2 * channels:
        raise ValueError(
            f'The per-pixel discretized logistic needs a decoder output of 2C = {2 * channels} '
            f'channels (mean and log-scale), got {out.shape[-1]}: use a net that emits them (model.net='
            f'vaepp) or model.logistic_scale=scalar.')
      pre_mean, log_scale = out[..., :channels], out[..., channels:]
    else:
      pre_mean, log_scale = out, jnp.broadcast_to(self.learned_log_scale, out.shape)
    return jnp.tanh(pre_mean), jnp.maximum(log_scale, self.min_log_scale)

  def log_prob(self, x: Array, out: Array) -> Array:
    channels = x.shape[-1]
    mean, log_scale = self._split(out, channels)
    k = jnp.clip(jnp.round(x * 255.0), 0.0, 255.0)
    u = (k - 127.5) / 128.0
    inv_scale = jnp.exp(-log_scale)
    low = (u - self.HALF_BIN - mean) * inv_scale
    high = (u + self.HALF_BIN - mean) * inv_scale
    middle = (-jax.nn.softplus(-high) - jax.nn.softplus(low)
              + jnp.log(-jnp.expm1(low - high)))
    log_p = jnp.where(k == 0, -jax.nn.softplus(-high),          # log sigmoid(high)
                      jnp.where(k == 255, -jax.nn.softplus(low),  # log (1 - sigmoid(low))
                                middle))
    return jnp.sum(log_p, axis=_event_axes(self.event_ndims))

  def mean(self, out: Array) -> Array:
    """The logistic's location as an image (what the code plots and its critic reads):
    (128 tanh(.) + 127.5) / 255, in (-0.5 / 255, 255.5 / 255); out's first C channels for the
    per-pixel scale. Not clipped to [0, 1]: the code's critic reads tanh(.) as it is, and a clip
    would zero the gradient wherever |tanh| > 127.5 / 128 (images are clipped where they are
    written or scored)."""
    pre_mean = out[..., :out.shape[-1] // 2] if self.scale == 'per_pixel' else out
    return (128.0 * jnp.tanh(pre_mean) + 127.5) / 255.0


def output_channels(model_config, channels: int) -> int:
  """How many channels the decoder emits for images of `channels` under `model_config.likelihood`
  (its entry's `output_channels`, (model_config, channels) -> int; default: `channels`)."""
  model_config = config_lib.complete_section(model_config, 'model')
  per_entry = REGISTRY.info(model_config.likelihood).get('output_channels')
  return per_entry(model_config, channels) if per_entry else channels


class BitsPerDim(hooks.EvaluationHooks):
  """8-bit images: every NLL of the result also in bits per dimension (nats / (D log 2))."""

  def units(self, result, input_shape):
    nats_per_bit = math.log(2.0) * math.prod(input_shape)
    return {key.replace('nll', 'bits_per_dim', 1): result[key] / nats_per_bit
            for key in ('nll', 'nll_with_prior_log_z') if key in result}


# Builders: (model_config, event_shape) -> module. `model_config` is the `config.model` section.
REGISTRY = registry.Registry('model.likelihood')


@REGISTRY.register('bernoulli', binary_data=True)
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


def _logistic_channels(model_config, channels: int) -> int:
  """A location per channel, and a log-scale per channel with `logistic_scale=per_pixel`."""
  return 2 * channels if model_config.logistic_scale == 'per_pixel' else channels


@REGISTRY.register('discretized_logistic', output_channels=_logistic_channels,
                   evaluation_hooks=BitsPerDim())
def _discretized_logistic(model_config, event_shape) -> nn.Module:
  if model_config.logistic_scale not in DiscretizedLogistic.SCALES:
    raise ValueError(f'Unknown model.logistic_scale {model_config.logistic_scale!r}; allowed: '
                     f'{", ".join(DiscretizedLogistic.SCALES)}.')
  return DiscretizedLogistic(scale=model_config.logistic_scale,
                             min_log_scale=float(model_config.logistic_min_log_scale),
                             event_ndims=len(event_shape))


def create(model_config, event_shape) -> nn.Module:
  """The likelihood named by `model_config.likelihood` for x of `event_shape` (missing keys from
  `config.defaults`)."""
  model_config = config_lib.complete_section(model_config, 'model')
  return REGISTRY.get(model_config.likelihood)(model_config, tuple(event_shape))
