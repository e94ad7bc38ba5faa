"""Priors p(z) with `log_prob(z) -> [...]` and `sample(rng, num_samples) -> [num_samples, latent_dim]`."""

from typing import Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from vaeprior_jax import distributions
from vaeprior_jax import flows

Array = jax.Array


def _check_latent(z: Array, latent_dim: int, name: str):
  if z.shape[-1] != latent_dim:
    raise ValueError(f'{name} expects z of shape [..., {latent_dim}], got {z.shape}.')


class StandardNormalPrior(nn.Module):
  """p(z) = N(z; 0, I)."""
  latent_dim: int

  def log_prob(self, z: Array) -> Array:
    _check_latent(z, self.latent_dim, type(self).__name__)
    return distributions.standard_normal_log_prob(z)

  def sample(self, rng: Array, num_samples: int) -> Array:
    return jax.random.normal(rng, (num_samples, self.latent_dim))


class RealNVPPrior(nn.Module):
  """Learned prior p(z) = N(f(z); 0, I) |det df/dz| with f a RealNVP (Xu et al., Eq. 4).

  Sampling inverts the flow: w ~ N(0, I), z = f^{-1}(w).
  """
  latent_dim: int
  num_blocks: int
  hidden_units: int = 256
  scale_bias: float = 2.0
  negative_slope: float = 0.2
  unroll: int = 1

  def setup(self):
    self.flow = flows.RealNVP(self.num_blocks, self.hidden_units, self.scale_bias,
                              self.negative_slope, self.unroll)

  def log_prob(self, z: Array) -> Array:
    _check_latent(z, self.latent_dim, type(self).__name__)
    w, log_det = self.flow.forward_and_log_det(z)
    return distributions.standard_normal_log_prob(w) + log_det

  def sample(self, rng: Array, num_samples: int) -> Array:
    w = jax.random.normal(rng, (num_samples, self.latent_dim))
    return self.flow.inverse_and_log_det(w)[0]


class MixtureOfGaussiansPrior(nn.Module):
  """p(z) = (1/K) sum_k N(z; m_k, diag(s_k^2)) with learnable means and variances (Tomczak & Welling's
  MoG baseline). Means start as draws of N(0, I), standard deviations at 1."""
  latent_dim: int
  num_components: int

  def setup(self):
    self.means = self.param('means', nn.initializers.normal(1.0),
                            (self.num_components, self.latent_dim))
    self.log_stds = self.param('log_stds', nn.initializers.zeros,
                               (self.num_components, self.latent_dim))

  def log_prob(self, z: Array) -> Array:
    _check_latent(z, self.latent_dim, type(self).__name__)
    return distributions.diag_normal_mixture_log_prob(z, self.means, self.log_stds)

  def sample(self, rng: Array, num_samples: int) -> Array:
    return distributions.sample_diag_normal_mixture(rng, self.means, self.log_stds, num_samples)


class VampPrior(nn.Module):
  """The VampPrior (Tomczak & Welling, 2018): p(z) = (1/K) sum_k q(z|u_k), K pseudo-inputs u_k.

  The module holds the pseudo-inputs; the components q(z|u_k) come from the VAE's own encoder, so
  `log_prob` and `sample` take the encoder's outputs for the pseudo-inputs, (means, log_stds), each
  [K, latent_dim] (`VAE.prior_log_prob` / `VAE.sample_prior` pass them). The pseudo-inputs are kept in
  the data range [0, 1] by a hard tanh (clipping, as the paper's code). With `trainable=False` (the
  `vampprior_data` variant) they receive no gradient: K training images set by `set_pseudo_inputs`.
  """
  latent_dim: int
  num_components: int
  input_shape: Tuple[int, int, int]
  trainable: bool = True

  def setup(self):
    self.raw_pseudo_inputs = self.param(
        'pseudo_inputs', nn.initializers.uniform(1.0),
        (self.num_components,) + tuple(self.input_shape))

  def pseudo_inputs(self) -> Array:
    u = jnp.clip(self.raw_pseudo_inputs, 0.0, 1.0)
    return u if self.trainable else jax.lax.stop_gradient(u)

  def log_prob(self, z: Array, means: Array, log_stds: Array) -> Array:
    _check_latent(z, self.latent_dim, type(self).__name__)
    return distributions.diag_normal_mixture_log_prob(z, means, log_stds)

  def sample(self, rng: Array, num_samples: int, means: Array, log_stds: Array) -> Array:
    return distributions.sample_diag_normal_mixture(rng, means, log_stds, num_samples)


def set_pseudo_inputs(params, images) -> dict:
  """Returns `params` with the VampPrior's pseudo-inputs replaced by `images` [K, H, W, C]."""
  old = params['prior']['pseudo_inputs']
  images = jnp.asarray(images, old.dtype)
  if images.shape != old.shape:
    raise ValueError(f'Pseudo-inputs must have shape {old.shape}, got {images.shape}.')
  return dict(params, prior=dict(params['prior'], pseudo_inputs=images))


PRIORS = ('standard', 'realnvp', 'mog', 'vampprior', 'vampprior_data')


def create(name: str, latent_dim: int, flow_depth: int, flow_hidden_units: int = 256,
           flow_unroll: int = 1,
           scale_bias: float = 2.0, negative_slope: float = 0.2, num_components: int = 500,
           input_shape: Tuple[int, int, int] = (28, 28, 1)) -> nn.Module:
  """Builds the prior called `name` (one of PRIORS)."""
  if name == 'standard':
    return StandardNormalPrior(latent_dim)
  if name == 'realnvp':
    return RealNVPPrior(latent_dim, flow_depth, flow_hidden_units, scale_bias, negative_slope,
                        flow_unroll)
  if name == 'mog':
    return MixtureOfGaussiansPrior(latent_dim, num_components)
  if name in ('vampprior', 'vampprior_data'):
    return VampPrior(latent_dim, num_components, tuple(input_shape), name == 'vampprior')
  raise ValueError(f'Unknown prior {name!r}; allowed: {", ".join(PRIORS)}.')
