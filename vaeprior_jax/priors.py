"""Priors p(z) with `log_prob(z) -> [...]` and `sample(rng, num_samples) -> [num_samples, latent_dim]`."""

import flax.linen as nn
import jax

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

  def setup(self):
    self.flow = flows.RealNVP(self.num_blocks, self.hidden_units, self.scale_bias,
                              self.negative_slope)

  def log_prob(self, z: Array) -> Array:
    _check_latent(z, self.latent_dim, type(self).__name__)
    w, log_det = self.flow.forward_and_log_det(z)
    return distributions.standard_normal_log_prob(w) + log_det

  def sample(self, rng: Array, num_samples: int) -> Array:
    w = jax.random.normal(rng, (num_samples, self.latent_dim))
    return self.flow.inverse_and_log_det(w)[0]


PRIORS = ('standard', 'realnvp')


def create(name: str, latent_dim: int, flow_depth: int, flow_hidden_units: int = 256,
           scale_bias: float = 2.0, negative_slope: float = 0.2) -> nn.Module:
  """Builds the prior called `name` (one of PRIORS)."""
  if name == 'standard':
    return StandardNormalPrior(latent_dim)
  if name == 'realnvp':
    return RealNVPPrior(latent_dim, flow_depth, flow_hidden_units, scale_bias, negative_slope)
  raise ValueError(f'Unknown prior {name!r}; allowed: {", ".join(PRIORS)}.')
