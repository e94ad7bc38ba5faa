"""Xu et al.'s learned RealNVP prior (`model.prior=realnvp`)."""

from typing import Optional

import flax.linen as nn
import jax

from vaeprior_jax import distributions
from vaeprior_jax import flows
from vaeprior_jax.priors.base import REGISTRY, PriorContext, check_latent

Array = jax.Array


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

  def log_prob(self, z: Array, ctx: Optional[PriorContext] = None) -> Array:
    del ctx
    check_latent(z, self.latent_dim, type(self).__name__)
    w, log_det = self.flow.forward_and_log_det(z)
    return distributions.standard_normal_log_prob(w) + log_det

  def sample(self, rng: Array, num_samples: int, ctx: Optional[PriorContext] = None) -> Array:
    del ctx
    w = jax.random.normal(rng, (num_samples, self.latent_dim))
    return self.flow.inverse_and_log_det(w)[0]


REGISTRY.register('realnvp', lambda mc, input_shape: RealNVPPrior(mc.latent_dim,
                                                                  **flows.settings(mc)),
                  validate=flows.check_settings)
