"""VAEPP's networks for 28x28 grey images (static / dynamic MNIST, Fashion-MNIST, Omniglot), as in the
authors' code (chenwenxiao/adversarial-prior-vae, `code/experiment/dmm/dmm_bernouli*.py`: `q_net`,
`G_theta`, `D_psi`).

All three use the pre-activation residual block of `base.ResidualBlock` (leaky ReLU, 3x3 kernels, a
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

The residual blocks are named `hidden_*`, so `methods.objectives.l2_penalty` covers their kernels: the
code's L2 (2e-4) is on the residual blocks only. H and W must be divisible by 4.

Colour images (8-bit, with the discretized logistic likelihood; the decoders emit
`likelihoods.output_channels` channels: the mean's pre-activation, then per-pixel log-scales when
`model.logistic_scale=per_pixel`; the image is mapped to the code's u = (255 x - 127.5) / 128 first):

  vaepp_cifar     `dmm_cifar10.py`, the NLL model of Tables 1 and 3 (latent 1,024 as an H/4 x W/4 map):
    encoder       Res[96, k5] -> Res[96] -> Res[192, /2] -> Res[192] -> Res[192, /2] -> Res[192] ->
                  Res[192] -> (mean, log_std) = two Res[d / (H/4 W/4)] blocks with zero-initialised
                  kernels, flattened; log_std clipped below at `min_log_std` (-3).
    decoder       z as [H/4, W/4, d / (H/4 W/4)] -> DeRes[192] x3 -> DeRes[192, x2] -> DeRes[192] x2 ->
                  DeRes[96, x2] -> DeRes[96, k5] -> Conv1x1 heads, zero-initialised.
    critic        Res[16] -> Res[32] -> Res[64] -> Res[128, /2] -> Res[256, /2] -> Res[256, /2] ->
                  Flatten -> Dense[64] -> Dense[1].
  vaepp_sampling  `dmm_for_sampling.py`, the sampling (FID) model of Table 4 for CIFAR-10 (32x32) and
                  CelebA (64x64; the first encoder/critic block and the last decoder block then have
                  stride 2), latent 128, the code's `uniform_scale` (`model.logistic_scale=scalar`):
    encoder       Res[32, k5, /s] -> Res[32] -> Res[64, /2] -> Res[64] -> Res[128, /2] -> Flatten ->
                  two zero-initialised Dense[d]; log_std clipped below at -3.
    decoder       Dense[8 x 8 x 64] -> DeRes[64, x2] -> DeRes[64] -> DeRes[32, x2] -> DeRes[32] ->
                  DeRes[32, k5, xs] -> Conv1x1 heads, zero-initialised.
    critic        Res[32, /s] -> Res[32] -> Res[64, /2] -> Res[64] -> Res[64, /2] -> Flatten ->
                  Dense[64] -> Dense[1].
"""

from typing import Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from vaeprior_jax import config as config_lib
from vaeprior_jax import likelihoods
from vaeprior_jax.nets import base

Array = jax.Array

# This component's config keys and their defaults (`config.declare`).
config_lib.declare(
    'model.net=vaepp',
    model=dict(
        vaepp_min_log_std=-5.0,  # net=vaepp: log_std clipped below (code: -3 static MNIST)
        vaepp_mean_activation='sigmoid',  # ... Bernoulli mean: sigmoid | tanh_clip (code; cannot
        # train from its zero init: vaepp_nets)
    ),
)


STACK = ((16, 1), (32, 2), (64, 2))
DECODER_STACK = ((64, 2), (32, 2), (16, 1))
MEAN_ACTIVATIONS = ('tanh_clip', 'sigmoid')


def _trunk(x: Array, negative_slope: float) -> Array:
  """The encoder's and the discriminator's residual stack on [..., H, W, C], flattened: [..., F]."""
  batch_shape = x.shape[:-3]
  h = x.reshape((-1,) + x.shape[-3:])
  for i, (features, stride) in enumerate(STACK):
    h = base.ResidualBlock(features, stride, negative_slope=negative_slope, name=f'hidden_{i}')(h)
  return h.reshape(batch_shape + (-1,))


class Encoder(nn.Module):
  latent_dim: int
  min_log_std: float = -5.0
  negative_slope: float = 0.2

  @nn.compact
  def __call__(self, x: Array) -> Tuple[Array, Array]:
    base.check_spatial(x.shape[-3:])
    h = _trunk(x, self.negative_slope)
    mean = nn.Dense(self.latent_dim, kernel_init=nn.initializers.zeros, name='mean')(h)
    log_std = nn.Dense(self.latent_dim, kernel_init=nn.initializers.zeros, name='log_std')(h)
    return mean, jnp.maximum(log_std, self.min_log_std)


class Decoder(nn.Module):
  output_shape: Tuple[int, int, int]
  mean_activation: str = 'tanh_clip'
  negative_slope: float = 0.2
  out_channels: int = 0  # Channels per pixel emitted (0: the image's; see `base.output_shape_of`).

  @nn.compact
  def __call__(self, z: Array) -> Array:
    height, width, channels = self.output_shape
    shape = base.output_shape_of(self.output_shape, self.out_channels)
    h = nn.Dense(height // 4 * width // 4 * 64, name='dense')(z)
    h = h.reshape((-1, height // 4, width // 4, 64))
    for i, (features, stride) in enumerate(DECODER_STACK):
      h = base.ResidualBlock(features, stride, transpose=True, negative_slope=self.negative_slope,
                             name=f'hidden_{i}')(h)
    a = nn.Conv(shape[-1], (1, 1), kernel_init=nn.initializers.zeros, name='mean')(h)
    if self.mean_activation == 'tanh_clip':  # On the image's channels (the means' logits).
      m = jnp.clip(jnp.tanh(a[..., :channels]), 1e-7, 1 - 1e-7)
      logits = jnp.concatenate([jnp.log(m) - jnp.log1p(-m), a[..., channels:]], axis=-1)
    else:
      logits = a
    return logits.reshape(z.shape[:-1] + shape)


class Discriminator(nn.Module):
  """D(x) [B] for images [B, H, W, C]; smaller means more like the data."""
  negative_slope: float = 0.2

  @nn.compact
  def __call__(self, x: Array) -> Array:
    base.check_spatial(x.shape[-3:])
    h = _trunk(x, self.negative_slope)
    h = nn.Dense(64, name='dense')(h)
    return nn.Dense(1, name='out')(h)[..., 0]


def _build(model_config, input_shape):
  base.check_spatial(input_shape)
  if model_config.vaepp_mean_activation not in MEAN_ACTIVATIONS:
    raise ValueError(f'Unknown model.vaepp_mean_activation {model_config.vaepp_mean_activation!r}; '
                     f'allowed: {", ".join(MEAN_ACTIVATIONS)}.')
  return {'encoder': Encoder(model_config.latent_dim, model_config.vaepp_min_log_std,
                             model_config.negative_slope),
          'decoder': Decoder(tuple(input_shape), model_config.vaepp_mean_activation,
                             model_config.negative_slope,
                             likelihoods.output_channels(model_config, input_shape[-1]))}


def _to_code_coordinates(x: Array) -> Array:
  """8-bit images k / 255 as the code feeds them to its nets: (k - 127.5) / 128."""
  return (x * 255.0 - 127.5) / 128.0


def _decoder_heads(h: Array, out_channels: int) -> Array:
  """The code's 1x1 heads with zero-initialised kernels: [mean pre-activation (C), log-scale (C)] or
  the mean alone (out_channels = C)."""
  return nn.Conv(out_channels, (1, 1), kernel_init=nn.initializers.zeros, name='out')(h)


CIFAR_ENCODER = ((96, 1, 5), (96, 1, 3), (192, 2, 3), (192, 1, 3), (192, 2, 3), (192, 1, 3),
                 (192, 1, 3))
CIFAR_DECODER = ((192, 1, 3), (192, 1, 3), (192, 1, 3), (192, 2, 3), (192, 1, 3), (192, 1, 3),
                 (96, 2, 3), (96, 1, 5))
CIFAR_CRITIC = ((16, 1, 3), (32, 1, 3), (64, 1, 3), (128, 2, 3), (256, 2, 3), (256, 2, 3))


def _latent_map_channels(latent_dim: int, height: int, width: int) -> int:
  cells = (height // 4) * (width // 4)
  if latent_dim % cells:
    raise ValueError(f'model.net=vaepp_cifar keeps z as a {height // 4}x{width // 4} map: '
                     f'model.latent_dim must be a multiple of {cells}, got {latent_dim}.')
  return latent_dim // cells


class CifarEncoder(nn.Module):
  latent_dim: int
  min_log_std: float = -3.0
  negative_slope: float = 0.2

  @nn.compact
  def __call__(self, x: Array) -> Tuple[Array, Array]:
    base.check_spatial(x.shape[-3:])
    batch_shape = x.shape[:-3]
    channels = _latent_map_channels(self.latent_dim, *x.shape[-3:-1])
    h = _to_code_coordinates(x).reshape((-1,) + x.shape[-3:])
    h = base.residual_stack(h, CIFAR_ENCODER, self.negative_slope)
    heads = [base.ResidualBlock(channels, 1, negative_slope=self.negative_slope, zero_init=True,
                                name=f'hidden_{name}')(h).reshape(batch_shape + (-1,))
             for name in ('mean', 'log_std')]
    return heads[0], jnp.maximum(heads[1], self.min_log_std)


class CifarDecoder(nn.Module):
  output_shape: Tuple[int, int, int]
  out_channels: int
  negative_slope: float = 0.2

  @nn.compact
  def __call__(self, z: Array) -> Array:
    height, width, _ = self.output_shape
    channels = _latent_map_channels(z.shape[-1], height, width)
    h = z.reshape((-1, height // 4, width // 4, channels))
    h = base.residual_stack(h, CIFAR_DECODER, self.negative_slope, transpose=True)
    return _decoder_heads(h, self.out_channels).reshape(
        z.shape[:-1] + (height, width, self.out_channels))


class CifarDiscriminator(nn.Module):
  negative_slope: float = 0.2

  @nn.compact
  def __call__(self, x: Array) -> Array:
    base.check_spatial(x.shape[-3:])
    h = base.residual_stack(_to_code_coordinates(x), CIFAR_CRITIC, self.negative_slope)
    h = nn.Dense(64, name='dense')(h.reshape(h.shape[0], -1))
    return nn.Dense(1, name='out')(h)[..., 0]


def _sampling_first_stride(shape) -> int:
  """dmm_for_sampling.py: stride 2 in the first encoder/critic and the last decoder block for CelebA
  (64x64), 1 for CIFAR-10 (32x32); the nets reach 8x8 either way."""
  height, width = shape[0], shape[1]
  if (height, width) not in ((32, 32), (64, 64)):
    raise ValueError(f'model.net=vaepp_sampling is for 32x32 (CIFAR-10) or 64x64 (CelebA) images, '
                     f'got {height}x{width}.')
  return height // 32


class SamplingEncoder(nn.Module):
  latent_dim: int
  min_log_std: float = -3.0
  negative_slope: float = 0.2

  @nn.compact
  def __call__(self, x: Array) -> Tuple[Array, Array]:
    s = _sampling_first_stride(x.shape[-3:])
    batch_shape = x.shape[:-3]
    h = _to_code_coordinates(x).reshape((-1,) + x.shape[-3:])
    h = base.residual_stack(h, ((32, s, 5), (32, 1, 3), (64, 2, 3), (64, 1, 3), (128, 2, 3)),
                        self.negative_slope)
    h = h.reshape(batch_shape + (-1,))
    mean = nn.Dense(self.latent_dim, kernel_init=nn.initializers.zeros, name='mean')(h)
    log_std = nn.Dense(self.latent_dim, kernel_init=nn.initializers.zeros, name='log_std')(h)
    return mean, jnp.maximum(log_std, self.min_log_std)


class SamplingDecoder(nn.Module):
  output_shape: Tuple[int, int, int]
  out_channels: int
  negative_slope: float = 0.2

  @nn.compact
  def __call__(self, z: Array) -> Array:
    s = _sampling_first_stride(self.output_shape)
    h = nn.Dense(8 * 8 * 64, name='dense')(z).reshape((-1, 8, 8, 64))
    h = base.residual_stack(h, ((64, 2, 3), (64, 1, 3), (32, 2, 3), (32, 1, 3), (32, s, 5)),
                        self.negative_slope, transpose=True)
    return _decoder_heads(h, self.out_channels).reshape(
        z.shape[:-1] + tuple(self.output_shape[:2]) + (self.out_channels,))


class SamplingDiscriminator(nn.Module):
  negative_slope: float = 0.2

  @nn.compact
  def __call__(self, x: Array) -> Array:
    s = _sampling_first_stride(x.shape[-3:])
    h = base.residual_stack(_to_code_coordinates(x),
                        ((32, s, 3), (32, 1, 3), (64, 2, 3), (64, 1, 3), (64, 2, 3)),
                        self.negative_slope)
    h = nn.Dense(64, name='dense')(h.reshape(h.shape[0], -1))
    return nn.Dense(1, name='out')(h)[..., 0]


def _check_colour(model_config, input_shape, net: str):
  if len(input_shape) != 3 or input_shape[-1] != 3:
    raise ValueError(f'model.net={net} is for colour images (H, W, 3), got {tuple(input_shape)}.')
  if model_config.likelihood != 'discretized_logistic':
    raise ValueError(f'model.net={net} ends in the heads of a discretized logistic; it needs '
                     f'model.likelihood=discretized_logistic, got {model_config.likelihood!r}.')


def _build_cifar(model_config, input_shape):
  _check_colour(model_config, input_shape, 'vaepp_cifar')
  base.check_spatial(input_shape)
  _latent_map_channels(model_config.latent_dim, input_shape[0], input_shape[1])
  out = likelihoods.output_channels(model_config, input_shape[-1])
  return {'encoder': CifarEncoder(model_config.latent_dim, model_config.vaepp_min_log_std,
                                  model_config.negative_slope),
          'decoder': CifarDecoder(tuple(input_shape), out, model_config.negative_slope)}


def _build_sampling(model_config, input_shape):
  _check_colour(model_config, input_shape, 'vaepp_sampling')
  _sampling_first_stride(input_shape)
  out = likelihoods.output_channels(model_config, input_shape[-1])
  return {'encoder': SamplingEncoder(model_config.latent_dim, model_config.vaepp_min_log_std,
                                     model_config.negative_slope),
          'decoder': SamplingDecoder(tuple(input_shape), out, model_config.negative_slope)}


base.REGISTRY.register('vaepp', _build)
base.REGISTRY.register('vaepp_cifar', _build_cifar)
base.REGISTRY.register('vaepp_sampling', _build_sampling)
base.DISCRIMINATORS.register('vaepp', lambda mc, input_shape: Discriminator(mc.negative_slope))
base.DISCRIMINATORS.register('vaepp_cifar',
                               lambda mc, input_shape: CifarDiscriminator(mc.negative_slope))
base.DISCRIMINATORS.register('vaepp_sampling',
                               lambda mc, input_shape: SamplingDiscriminator(mc.negative_slope))
NETS = ('vaepp', 'vaepp_cifar', 'vaepp_sampling')
