"""VAEPP's networks for 28x28 grey images (static / dynamic MNIST, Fashion-MNIST, Omniglot), as in the
authors' code (chenwenxiao/adversarial-prior-vae, `code/experiment/dmm/dmm_bernouli*.py`: `q_net`,
`G_theta`, `D_psi`).

All three use the pre-activation residual block of `nets.ResidualBlock` (leaky ReLU, 3x3 kernels, a
1x1 shortcut where the shape changes), with no normalisation:

  encoder        x -> Res[16] -> Res[32, /2] -> Res[64, /2] -> Flatten -> (mean, log_std) = two
                 Dense[d] with zero-initialised kernels; log_std clipped below at `min_log_std`
                 (the code: -3 for static MNIST, -5 for dynamic MNIST, Fashion-MNIST and Omniglot).
  decoder        z -> Dense[H/4 W/4 64] (linear) -> DeRes[64, x2] -> DeRes[32, x2] -> DeRes[16] ->
                 Conv1x1[C], zero-initialised kernel, returning Bernoulli logits (the mean is their
                 sigmoid; `mean_activation='sigmoid'`, the default). The code's mean is
                 clip(tanh(.), 1e-7, 1 - 1e-7) (`mean_activation='tanh_clip'`): with the zero-initialised
                 last layer, tanh gives 0, which the clip maps to 1e-7 with a zero gradient, so the
                 decoder never receives a gradient and stays at 1e-7 everywhere (checked here: the
                 reconstruction term did not move in 200 steps). The published file cannot be what
                 produced the paper's numbers; sigmoid is the default, tanh_clip kept for the record.
  discriminator  x -> Res[16] -> Res[32, /2] -> Res[64, /2] -> Flatten -> Dense[64] -> Dense[1]
                 (both linear, as in the code), [B].

The residual blocks are named `hidden_*`, so `objectives.l2_penalty` covers their kernels: the
code's L2 (2e-4) is on the residual blocks only. H and W must be divisible by 4.
"""

from typing import Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from vaeprior_jax import nets
from vaeprior_jax import priors

Array = jax.Array

STACK = ((16, 1), (32, 2), (64, 2))
DECODER_STACK = ((64, 2), (32, 2), (16, 1))
MEAN_ACTIVATIONS = ('tanh_clip', 'sigmoid')


def _trunk(x: Array, negative_slope: float) -> Array:
  """The encoder's and the discriminator's residual stack on [..., H, W, C], flattened: [..., F]."""
  batch_shape = x.shape[:-3]
  h = x.reshape((-1,) + x.shape[-3:])
  for i, (features, stride) in enumerate(STACK):
    h = nets.ResidualBlock(features, stride, negative_slope=negative_slope, name=f'hidden_{i}')(h)
  return h.reshape(batch_shape + (-1,))


class Encoder(nn.Module):
  latent_dim: int
  min_log_std: float = -5.0
  negative_slope: float = 0.2

  @nn.compact
  def __call__(self, x: Array) -> Tuple[Array, Array]:
    nets.check_spatial(x.shape[-3:])
    h = _trunk(x, self.negative_slope)
    mean = nn.Dense(self.latent_dim, kernel_init=nn.initializers.zeros, name='mean')(h)
    log_std = nn.Dense(self.latent_dim, kernel_init=nn.initializers.zeros, name='log_std')(h)
    return mean, jnp.maximum(log_std, self.min_log_std)


class Decoder(nn.Module):
  output_shape: Tuple[int, int, int]
  mean_activation: str = 'tanh_clip'
  negative_slope: float = 0.2

  @nn.compact
  def __call__(self, z: Array) -> Array:
    height, width, channels = self.output_shape
    h = nn.Dense(height // 4 * width // 4 * 64, name='dense')(z)
    h = h.reshape((-1, height // 4, width // 4, 64))
    for i, (features, stride) in enumerate(DECODER_STACK):
      h = nets.ResidualBlock(features, stride, transpose=True, negative_slope=self.negative_slope,
                             name=f'hidden_{i}')(h)
    a = nn.Conv(channels, (1, 1), kernel_init=nn.initializers.zeros, name='mean')(h)
    if self.mean_activation == 'tanh_clip':
      m = jnp.clip(jnp.tanh(a), 1e-7, 1 - 1e-7)
      logits = jnp.log(m) - jnp.log1p(-m)
    else:
      logits = a
    return logits.reshape(z.shape[:-1] + tuple(self.output_shape))


class Discriminator(nn.Module):
  """D(x) [B] for images [B, H, W, C]; smaller means more like the data."""
  negative_slope: float = 0.2

  @nn.compact
  def __call__(self, x: Array) -> Array:
    nets.check_spatial(x.shape[-3:])
    h = _trunk(x, self.negative_slope)
    h = nn.Dense(64, name='dense')(h)
    return nn.Dense(1, name='out')(h)[..., 0]


def _build(model_config, input_shape):
  nets.check_spatial(input_shape)
  if model_config.vaepp_mean_activation not in MEAN_ACTIVATIONS:
    raise ValueError(f'Unknown model.vaepp_mean_activation {model_config.vaepp_mean_activation!r}; '
                     f'allowed: {", ".join(MEAN_ACTIVATIONS)}.')
  return {'encoder': Encoder(model_config.latent_dim, model_config.vaepp_min_log_std,
                             model_config.negative_slope),
          'decoder': Decoder(tuple(input_shape), model_config.vaepp_mean_activation,
                             model_config.negative_slope)}


nets.REGISTRY.register('vaepp', _build)
priors.DISCRIMINATORS.register('vaepp', lambda mc, input_shape: Discriminator(mc.negative_slope))
NETS = ('vaepp',)
