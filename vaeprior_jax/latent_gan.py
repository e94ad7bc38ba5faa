"""VAEPP's latent WGAN: a generator G_w(eps) of latents, eps ~ N(0, I), trained against a critic D_k
on latents to imitate the aggregated posterior q(z), after the VAE phase (the VAE frozen). Its
samples start VAEPP's MALA chains (and, decoded directly, are the paper's "GAN-VAEPP" samples).

The nets follow the authors' code (`G_omega`, `D_kappa`): weight-normalised Dense[40] layers with
leaky ReLU, five in the generator and six in the critic, then a linear Dense to d (generator) or 1
(critic). The hidden layers are named `hidden_*`, so the run's L2 (`objectives.l2_penalty`) covers
them, as the code's regulariser does.

Losses (WGAN with a gradient penalty R in latent space, `penalties.gradient_penalty`), as the
code's `adv_D_loss` / `adv_G_loss`, where D scores real latents low (as VAEPP's data critic does):
  critic     mean D_k(z_real) - mean D_k(G_w(eps)) + R(D_k; z_real, G_w(eps))
  generator  mean D_k(G_w(eps))
with z_real the posterior means of a training batch (the code's `q_net['z'].distribution.mean`).
"""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array


class MLP(nn.Module):
  """Weight-normalised Dense[units] x len(hidden) with leaky ReLU, then a linear Dense[out]."""
  hidden: Sequence[int]
  out: int
  weight_norm: bool = True
  negative_slope: float = 0.2

  @nn.compact
  def __call__(self, x: Array) -> Array:
    for i, units in enumerate(self.hidden):
      dense = nn.Dense(units, name=f'hidden_{i}')
      layer = nn.WeightNorm(dense) if self.weight_norm else dense
      x = nn.leaky_relu(layer(x), self.negative_slope)
    return nn.Dense(self.out, name='out')(x)


def critic_loss(critic, real: Array, fake: Array) -> Array:
  """mean D(real) - mean D(fake): the critic learns to score real latents low (penalty separate)."""
  return jnp.mean(critic(real)) - jnp.mean(critic(fake))


def generator_loss(critic, fake: Array) -> Array:
  """mean D(fake): the generator moves its latents to where the critic scores low (real)."""
  return jnp.mean(critic(fake))
