"""VAEPP's latent WGAN: a generator G_w(eps) of latents, eps ~ N(0, I), trained against a critic D_k
on latents to imitate the aggregated posterior q(z), after the VAE phase (the VAE frozen). Its
samples start VAEPP's MALA chains (and, decoded directly, are the paper's "GAN-VAEPP" samples).

The nets follow the authors' code (`G_omega`, `D_kappa`). For 28x28 grey images (`MLP`,
`model.latent_gan_net=mlp`): weight-normalised Dense[40] layers with leaky ReLU, five in the
generator and six in the critic, then Dense to d (generator: weight-normalised with leaky ReLU too,
as the code's last layer) or 1 (critic: linear), eps of size d.
For CIFAR-10 and CelebA (`dmm_cifar10.py`, `dmm_for_sampling.py`; `model.latent_gan_net=conv`) they
are convolutional on the latents seen as an 8x8x(d/64) map, eps of size 128:
  generator  eps -> Dense[4 x 4 x 256] (linear) -> DeRes[256] -> DeRes[256] -> DeRes[128, x2] ->
             DeRes[64] -> DeRes[32] -> DeRes[16] -> Conv1x1[d/64] (zero-initialised) -> flattened
  critic     z as the map -> Res[16] -> Res[32] -> Res[64] -> Res[128, /2] -> Res[256, /2] ->
             Res[256, /2] -> Flatten -> Dense[64] -> Dense[1] (both linear)
(pre-activation residual blocks, leaky ReLU, no normalisation, as `vaeprior_jax.nets.vaepp_nets`).
CIFAR-10's Algorithm 1 script (`dmm_cifar10_nD.py`; `model.latent_gan_net=conv_4x4`) has the same
generator, and a critic whose last two residual blocks do not stride: Res[256] -> Res[256] on the
4x4 map, so its Dense[64] reads 4 x 4 x 256 features. The
hidden layers and residual blocks are named `hidden_*`, so the run's L2 (`methods.objectives.l2_penalty`)
covers them, as the code's regulariser does (its dense layers are not regularised).

Losses (WGAN with a gradient penalty R in latent space, `penalties.gradient_penalty`), as the
code's `adv_D_loss` / `adv_G_loss`, where D scores real latents low (as VAEPP's data critic does):
  critic     mean D_k(z_real) - mean D_k(G_w(eps)) + R(D_k; z_real, G_w(eps))
  generator  mean D_k(G_w(eps))
with z_real the posterior means of a training batch (the code's `q_net['z'].distribution.mean`).
"""

from typing import Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from vaeprior_jax.nets import base

Array = jax.Array


class MLP(nn.Module):
  """Weight-normalised Dense[units] x len(hidden) with leaky ReLU, then Dense[out]: linear, or with
  `out_activation` weight-normalised with leaky ReLU like the hidden layers (the code's generator
  `G_omega` builds its last layer inside the same arg_scope as the others; its critic `D_kappa`
  adds a linear one after it)."""
  hidden: Sequence[int]
  out: int
  weight_norm: bool = True
  negative_slope: float = 0.2
  out_activation: bool = False

  @nn.compact
  def __call__(self, x: Array) -> Array:
    for i, units in enumerate(self.hidden):
      dense = nn.Dense(units, name=f'hidden_{i}')
      layer = nn.WeightNorm(dense) if self.weight_norm else dense
      x = nn.leaky_relu(layer(x), self.negative_slope)
    if not self.out_activation:
      return nn.Dense(self.out, name='out')(x)
    dense = nn.Dense(self.out, name='out')
    layer = nn.WeightNorm(dense) if self.weight_norm else dense
    return nn.leaky_relu(layer(x), self.negative_slope)


NETS = ('mlp', 'conv', 'conv_4x4')
CONV_MAP_SIZE = 8        # The code's latent map is 8x8 (x_shape / 4 for CIFAR-10, fixed for CelebA).
CONV_NOISE_DIM = 128     # The code's eps for the convolutional generator (p_omega_net).
CONV_GENERATOR = ((256, 1, 3), (256, 1, 3), (128, 2, 3), (64, 1, 3), (32, 1, 3), (16, 1, 3))
CONV_CRITIC = ((16, 1, 3), (32, 1, 3), (64, 1, 3), (128, 2, 3), (256, 2, 3), (256, 2, 3))
CONV_CRITIC_4X4 = ((16, 1, 3), (32, 1, 3), (64, 1, 3), (128, 2, 3), (256, 1, 3), (256, 1, 3))


def conv_map_shape(latent_dim: int) -> Tuple[int, int, int]:
  """The 8x8xC map the convolutional latent nets see a latent of size d as (C = d / 64)."""
  cells = CONV_MAP_SIZE * CONV_MAP_SIZE
  if latent_dim % cells:
    raise ValueError(f'model.latent_gan_net=conv sees z as an {CONV_MAP_SIZE}x{CONV_MAP_SIZE} map: '
                     f'model.latent_dim must be a multiple of {cells}, got {latent_dim}.')
  return CONV_MAP_SIZE, CONV_MAP_SIZE, latent_dim // cells


class ConvGenerator(nn.Module):
  """G_omega of the code's colour-image scripts: eps [B, e] -> latents [B, d] (see the module doc)."""
  latent_dim: int
  negative_slope: float = 0.2

  @nn.compact
  def __call__(self, eps: Array) -> Array:
    height, width, channels = conv_map_shape(self.latent_dim)
    h = nn.Dense((height // 2) * (width // 2) * 256, name='dense')(eps)
    h = h.reshape((-1, height // 2, width // 2, 256))
    h = base.residual_stack(h, CONV_GENERATOR, self.negative_slope, transpose=True)
    h = nn.Conv(channels, (1, 1), kernel_init=nn.initializers.zeros, name='out')(h)
    return h.reshape(eps.shape[:-1] + (self.latent_dim,))


class ConvCritic(nn.Module):
  """D_kappa of the code's colour-image scripts: latents [B, d] -> [B, 1] (as `MLP(..., 1)`);
  `blocks` (channels, stride, kernel) per residual block: CONV_CRITIC, or CONV_CRITIC_4X4."""
  latent_dim: int
  negative_slope: float = 0.2
  blocks: Sequence[Tuple[int, int, int]] = CONV_CRITIC

  @nn.compact
  def __call__(self, z: Array) -> Array:
    h = z.reshape((-1,) + conv_map_shape(self.latent_dim))
    h = base.residual_stack(h, self.blocks, self.negative_slope)
    h = nn.Dense(64, name='dense')(h.reshape(h.shape[0], -1))
    return nn.Dense(1, name='out')(h).reshape(z.shape[:-1] + (1,))


def critic_loss(critic, real: Array, fake: Array) -> Array:
  """mean D(real) - mean D(fake): the critic learns to score real latents low (penalty separate)."""
  return jnp.mean(critic(real)) - jnp.mean(critic(fake))


def generator_loss(critic, fake: Array) -> Array:
  """mean D(fake): the generator moves its latents to where the critic scores low (real)."""
  return jnp.mean(critic(fake))
