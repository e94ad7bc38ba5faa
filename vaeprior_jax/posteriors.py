"""Posteriors q(z|x), given the encoder's outputs (mean, log_std) of the base Gaussian.

Each has `sample_and_log_prob(mean, log_std, rng) -> (z, log q(z|x))`, one sample per row, and
`mean(mean, log_std, rng, num_samples) -> E_q[z]`.
"""

import math
from typing import Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from vaeprior_jax import config as config_lib
from vaeprior_jax import distributions
from vaeprior_jax import flows
from vaeprior_jax import registry

Array = jax.Array

# This component's config keys and their defaults (`config.declare`).
config_lib.declare(
    'model.posterior=truncated_gaussian|planar',
    model=dict(
        posterior_truncation=2.0,  # posterior=truncated_gaussian: |z - mu| <= this many sigma
        planar_layers=20,  # posterior=planar: planar layers (VAEPP's code: 20) over ...
        planar_base_truncation=0.0,  # ... N(mu, sigma^2), truncated at this many sigma if > 0
    ),
)


def gaussian_sample(mean: Array, log_std: Array, rng: Array) -> Tuple[Array, Array]:
  """(z ~ N(mean, diag(exp(2 log_std))), log N(z; mean, ...)), one sample per row."""
  w = mean + jnp.exp(log_std) * jax.random.normal(rng, mean.shape, mean.dtype)
  return w, distributions.diag_normal_log_prob(w, mean, log_std)


class GaussianPosterior(nn.Module):
  """q(z|x) = N(z; mu(x), diag(sigma(x)^2))."""

  def sample_and_log_prob(self, mean: Array, log_std: Array, rng: Array) -> Tuple[Array, Array]:
    return gaussian_sample(mean, log_std, rng)

  def mean(self, mean: Array, log_std: Array, rng: Array, num_samples: int) -> Array:
    """Exact: E_q[z] = mu(x) (the Monte Carlo estimate converges to it)."""
    del log_std, rng, num_samples
    return mean


class TruncatedGaussianPosterior(nn.Module):
  """q(z|x) = N(z; mu(x), diag(sigma(x)^2)) truncated to |z_k - mu_k| <= t sigma_k in every dimension
  (VAEPP's default, t = 2: its estimate of the partition function divides by q(z|x), and the
  untruncated tails make that estimate's variance explode; the paper's Sec. 5.1).

  log q = log N(z; mu, sigma^2) - d log(Phi(t) - Phi(-t)) inside the box. Sampling is
  reparameterised: z = mu + sigma eps, eps ~ N(0, 1) truncated to [-t, t].
  """
  truncation: float = 2.0

  def _log_mass(self) -> float:
    """log(Phi(t) - Phi(-t)) = log erf(t / sqrt 2), per dimension."""
    return math.log(math.erf(self.truncation / math.sqrt(2.0)))

  def log_prob(self, z: Array, mean: Array, log_std: Array) -> Array:
    """log q(z|x) for z inside the box (-inf outside), summed over the last axis."""
    inside = jnp.all(jnp.abs(z - mean) <= self.truncation * jnp.exp(log_std) * (1 + 1e-6), axis=-1)
    log_q = distributions.diag_normal_log_prob(z, mean, log_std) - z.shape[-1] * self._log_mass()
    return jnp.where(inside, log_q, -jnp.inf)

  def sample_and_log_prob(self, mean: Array, log_std: Array, rng: Array) -> Tuple[Array, Array]:
    t = self.truncation
    eps = jax.random.truncated_normal(rng, -t, t, mean.shape, mean.dtype)
    z = mean + jnp.exp(log_std) * eps
    log_q = (distributions.standard_normal_log_prob(eps) - jnp.sum(log_std, axis=-1)
             - z.shape[-1] * self._log_mass())
    return z, log_q

  def mean(self, mean: Array, log_std: Array, rng: Array, num_samples: int) -> Array:
    """Exact: the truncation is symmetric about mu."""
    del log_std, rng, num_samples
    return mean


class RealNVPPosterior(nn.Module):
  """q(z|x) with z = f_eta(w), w ~ N(mu(x), diag(sigma(x)^2)) (Xu et al., Eq. B.1).

  log q(z|x) = log N(w; mu, sigma^2) - log|det df_eta/dw|.
  """
  num_blocks: int
  hidden_units: int = 256
  scale_bias: float = 2.0
  negative_slope: float = 0.2
  unroll: int = 1

  def setup(self):
    self.flow = flows.RealNVP(self.num_blocks, self.hidden_units, self.scale_bias,
                              self.negative_slope, self.unroll)

  def sample_and_log_prob(self, mean: Array, log_std: Array, rng: Array) -> Tuple[Array, Array]:
    w, log_q_w = gaussian_sample(mean, log_std, rng)
    z, log_det = self.flow.forward_and_log_det(w)
    return z, log_q_w - log_det

  def mean(self, mean: Array, log_std: Array, rng: Array, num_samples: int) -> Array:
    """Monte Carlo estimate of E_q[z] with `num_samples` samples."""
    keys = jax.random.split(rng, num_samples)
    w = jax.vmap(lambda k: gaussian_sample(mean, log_std, k)[0])(keys)
    return jnp.mean(self.flow.forward_and_log_det(w)[0], axis=0)


class PlanarPosterior(nn.Module):
  """q(z|x) with z = f(w), f `num_layers` planar layers (`flows.PlanarFlow`) and w from the base
  q0(w|x): N(mu, sigma^2), or truncated to |w_k - mu_k| <= t sigma_k with `truncation` t > 0 (VAEPP's
  code: its MNIST-family scripts put the flow over the truncated normal, the CIFAR-10 ones over the
  plain one). log q(z|x) = log q0(w|x) - log|det df/dw|."""
  num_layers: int
  truncation: float = 0.0

  def setup(self):
    self.flow = flows.PlanarFlow(self.num_layers)
    self.base = TruncatedGaussianPosterior(self.truncation) if self.truncation > 0 else None

  def _base_sample(self, mean, log_std, rng):
    if self.base is None:
      return gaussian_sample(mean, log_std, rng)
    return self.base.sample_and_log_prob(mean, log_std, rng)

  def sample_and_log_prob(self, mean: Array, log_std: Array, rng: Array) -> Tuple[Array, Array]:
    w, log_q_w = self._base_sample(mean, log_std, rng)
    z, log_det = self.flow.forward_and_log_det(w)
    return z, log_q_w - log_det

  def mean(self, mean: Array, log_std: Array, rng: Array, num_samples: int) -> Array:
    """Monte Carlo estimate of E_q[z] with `num_samples` samples."""
    keys = jax.random.split(rng, num_samples)
    w = jax.vmap(lambda k: self._base_sample(mean, log_std, k)[0])(keys)
    return jnp.mean(self.flow.forward_and_log_det(w)[0], axis=0)


def _planar(mc) -> nn.Module:
  if mc.planar_layers < 1:
    raise ValueError(f'model.planar_layers must be >= 1 with model.posterior=planar, got '
                     f'{mc.planar_layers}.')
  return PlanarPosterior(mc.planar_layers, mc.planar_base_truncation)


# Builders: (model_config) -> posterior module; `model_config` is the `config.model` section.
REGISTRY = registry.Registry('model.posterior')
REGISTRY.register('gaussian', lambda mc: GaussianPosterior(), diagonal_gaussian=True)
REGISTRY.register('realnvp', validate=flows.check_settings,
                  entry=lambda mc: RealNVPPosterior(**flows.settings(mc)))
REGISTRY.register('truncated_gaussian',
                  lambda mc: TruncatedGaussianPosterior(mc.posterior_truncation))

REGISTRY.register('planar', _planar)

# The library's own posteriors (REGISTRY.names() also lists those user code registered).
POSTERIORS = ('gaussian', 'realnvp', 'truncated_gaussian', 'planar')


def from_config(model_config) -> nn.Module:
  """The posterior named by `model_config.posterior`, from REGISTRY (missing keys from
  `config.defaults`)."""
  model_config = config_lib.complete_section(model_config, 'model')
  return REGISTRY.get(model_config.posterior)(model_config)


def create(name: str, flow_depth: int, flow_hidden_units: int = 256, flow_unroll: int = 1,
           scale_bias: float = 2.0,
           negative_slope: float = 0.2) -> nn.Module:
  """Builds the posterior called `name` (a name of REGISTRY) from explicit settings."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  return from_config(ml_collections.ConfigDict(dict(
      posterior=name, flow_depth=flow_depth, flow_hidden_units=flow_hidden_units,
      flow_unroll=flow_unroll, coupling_scale_bias=scale_bias, negative_slope=negative_slope)))
