"""Xu et al. (2019)'s nets, App. B.2: DenseVAE (`dense`), ConvVAE (`conv`), ResnetVAE (`resnet`) and
PixelVAE (`pixel`).

Encoders map x [B, H, W, C] to the base Gaussian's (mean, log_std), each [B, latent_dim], through
h_phi(x) and two separate Linear heads. Decoders map z [B, latent_dim] to the likelihood's parameters
[B, H, W, C] (Bernoulli logits). All non-linear layers use leaky ReLU.
"""

from typing import Optional, Sequence, Tuple

import flax.linen as nn
import jax

from vaeprior_jax import likelihoods
from vaeprior_jax.nets.base import (DISCRIMINATORS, REGISTRY, GaussianHeads, ResidualBlock,
                                    _strided_layer, check_not_autoregressive_channels,
                                    check_spatial, conv_layer, output_shape_of)
from vaeprior_jax.nets.pixelcnn import PixelCNN, _images

Array = jax.Array

# Conv/Resnet stacks of App. B.2 for 28x28 inputs:
#   encoder  28x28x32 -> 28x28x32 -> 14x14x64 -> 14x14x64 -> 7x7x64 -> 7x7x16
#   decoder  7x7x16 -> 7x7x64 -> 14x14x64 -> 14x14x64 -> 28x28x32 -> 28x28x32
# Strides follow from the shapes; any H, W divisible by 4 works (32x32 gives 8x8 in the middle).
ENCODER_STACK = ((32, 1), (32, 1), (64, 2), (64, 1), (64, 2), (16, 1))
DECODER_STACK = ((64, 1), (64, 2), (64, 1), (32, 2), (32, 1))
BOTTLENECK_CHANNELS = 16

class DenseEncoder(nn.Module):
  """h_phi(x) = x -> Flatten -> Dense[500 -> 500]."""
  latent_dim: int
  hidden_units: Sequence[int] = (500, 500)
  negative_slope: float = 0.2

  @nn.compact
  def __call__(self, x: Array) -> Tuple[Array, Array]:
    h = x.reshape(x.shape[:-3] + (-1,))
    for i, units in enumerate(self.hidden_units):
      h = nn.leaky_relu(nn.Dense(units, name=f'hidden_{i}')(h), self.negative_slope)
    return GaussianHeads(self.latent_dim, name='heads')(h)


class DenseDecoder(nn.Module):
  """h_theta(z) = z -> Dense[500 -> 500]; logits = Linear[H*W*C] -> UnFlatten[H x W x C]."""
  output_shape: Tuple[int, int, int]
  hidden_units: Sequence[int] = (500, 500)
  negative_slope: float = 0.2
  out_channels: int = 0  # Channels per pixel emitted (0: the image's; see `output_shape_of`).

  @nn.compact
  def __call__(self, z: Array) -> Array:
    h = z
    for i, units in enumerate(self.hidden_units):
      h = nn.leaky_relu(nn.Dense(units, name=f'hidden_{i}')(h), self.negative_slope)
    shape = output_shape_of(self.output_shape, self.out_channels)
    logits = nn.Dense(shape[0] * shape[1] * shape[2], name='logits')(h)
    return logits.reshape(z.shape[:-1] + shape)


class DenseCritic(nn.Module):
  """D(x) [...] for images [..., H, W, C]: DenseEncoder's trunk, x -> Flatten -> Dense[500 -> 500],
  then a scalar Linear head. Not one of Xu et al.'s nets: the critic of a pull-back prior on
  DenseVAE (`model.discriminator=dense`), so that every net of such a model is dense."""
  hidden_units: Sequence[int] = (500, 500)
  negative_slope: float = 0.2

  @nn.compact
  def __call__(self, x: Array) -> Array:
    h = x.reshape(x.shape[:-3] + (-1,))
    for i, units in enumerate(self.hidden_units):
      h = nn.leaky_relu(nn.Dense(units, name=f'hidden_{i}')(h), self.negative_slope)
    return nn.Dense(1, name='out')(h)[..., 0]


def _conv_stack(h: Array, stack, block: str, transpose: bool, negative_slope: float,
                conv_backend: str) -> Array:
  """Applies the non-linear (de)conv or (de)resnet layers of `stack`, named hidden_0, hidden_1, ..."""
  for i, (features, stride) in enumerate(stack):
    name = f'hidden_{i}'
    if block == 'resnet':
      h = ResidualBlock(features, stride, transpose, negative_slope, conv_backend, name=name)(h)
    else:
      conv = _strided_layer(conv_backend, transpose)
      h = conv(features, (3, 3), (stride, stride), padding='SAME', name=name)(h)
    h = nn.leaky_relu(h, negative_slope) if block == 'conv' else h
  # A resnet stack is a non-linear layer too: close it with the activation.
  return nn.leaky_relu(h, negative_slope) if block == 'resnet' else h

class ConvEncoder(nn.Module):
  """h_phi(x) = x -> {Conv|Resnet}[28x28x32 -> ... -> 7x7x16] -> Flatten (App. B.2)."""
  latent_dim: int
  block: str = 'resnet'  # 'conv' (ConvVAE) or 'resnet' (ResnetVAE)
  negative_slope: float = 0.2
  conv_backend: str = 'xla'

  @nn.compact
  def __call__(self, x: Array) -> Tuple[Array, Array]:
    check_spatial(x.shape[-3:])
    batch_shape = x.shape[:-3]
    h = x.reshape((-1,) + x.shape[-3:])
    h = _conv_stack(h, ENCODER_STACK, self.block, False, self.negative_slope, self.conv_backend)
    h = h.reshape(batch_shape + (-1,))
    return GaussianHeads(self.latent_dim, name='heads')(h)


def _deconv_trunk(z: Array, output_shape, block: str, negative_slope: float,
                  conv_backend: str) -> Array:
  """z -> Dense[H/4*W/4*16] -> UnFlatten -> {DeConv|DeResnet}[...-> H x W x 32], as [-1, H, W, 32]."""
  height, width, _ = output_shape
  small = (height // 4, width // 4, BOTTLENECK_CHANNELS)
  h = nn.Dense(small[0] * small[1] * small[2], name='hidden_dense')(z)
  h = nn.leaky_relu(h, negative_slope).reshape((-1,) + small)
  return _conv_stack(h, DECODER_STACK, block, True, negative_slope, conv_backend)


class ConvDecoder(nn.Module):
  """h_theta(z) = z -> Dense[H/4*W/4*16] -> UnFlatten -> {DeConv|DeResnet}[7x7x64 -> ... -> 28x28x32];
  logits = LinearConv1x1[H x W x C]."""
  output_shape: Tuple[int, int, int]
  block: str = 'resnet'
  negative_slope: float = 0.2
  conv_backend: str = 'xla'
  out_channels: int = 0  # Channels per pixel emitted (0: the image's; see `output_shape_of`).

  @nn.compact
  def __call__(self, z: Array) -> Array:
    check_spatial(self.output_shape)
    shape = output_shape_of(self.output_shape, self.out_channels)
    h = _deconv_trunk(z, self.output_shape, self.block, self.negative_slope, self.conv_backend)
    logits = conv_layer(self.conv_backend)(shape[-1], (1, 1), name='logits')(h)
    return logits.reshape(z.shape[:-1] + shape)

class PixelCNNDecoder(nn.Module):
  """PixelVAE's decoder (App. B.2): h_theta(z) = Concat[x, h~(z)] -> PixelCNN[H x W x (C+32), 3 layers]
  with h~(z) the ResnetVAE decoder's trunk; logits = LinearConv1x1[H x W x C] (see `PixelCNN`)."""
  output_shape: Tuple[int, int, int]
  num_layers: int = 3
  dropout_rate: float = 0.5
  negative_slope: float = 0.2
  conv_backend: str = 'xla'
  autoregressive = True

  @nn.compact
  def __call__(self, z: Array, x: Array, deterministic: bool = True,
               dropout_rng: Optional[Array] = None) -> Array:
    check_spatial(self.output_shape)
    batch_shape = z.shape[:-1]
    cond = _deconv_trunk(z, self.output_shape, 'resnet', self.negative_slope, self.conv_backend)
    logits = PixelCNN(self.output_shape, self.num_layers, dropout_rate=self.dropout_rate,
                      negative_slope=self.negative_slope, conv_backend=self.conv_backend,
                      name='pixelcnn')(
                          _images(x, batch_shape, self.output_shape), cond, deterministic,
                          dropout_rng)
    return logits.reshape(batch_shape + tuple(self.output_shape))

# Xu et al.'s nets, registered under these names.
NETS = ('dense', 'conv', 'resnet', 'pixel')


def _out_channels(model_config, input_shape) -> int:
  return likelihoods.output_channels(model_config, input_shape[-1])


@REGISTRY.register('dense')
def _dense(model_config, input_shape):
  """DenseVAE."""
  m = model_config
  return {'encoder': DenseEncoder(m.latent_dim, negative_slope=m.negative_slope),
          'decoder': DenseDecoder(tuple(input_shape), negative_slope=m.negative_slope,
                                  out_channels=_out_channels(m, input_shape))}


DISCRIMINATORS.register(
    'dense', lambda mc, input_shape: DenseCritic(negative_slope=mc.negative_slope))


def _conv_builder(block: str):
  def build(model_config, input_shape):
    check_spatial(input_shape)
    m = model_config
    return {'encoder': ConvEncoder(m.latent_dim, block, m.negative_slope, m.conv_backend),
            'decoder': ConvDecoder(tuple(input_shape), block, m.negative_slope, m.conv_backend,
                                   _out_channels(m, input_shape))}
  build.__doc__ = f'{block.capitalize()}VAE.'
  return build


REGISTRY.register('conv', _conv_builder('conv'))
REGISTRY.register('resnet', _conv_builder('resnet'))


@REGISTRY.register('pixel', autoregressive=True)
def _pixel(model_config, input_shape):
  """PixelVAE: the ResnetVAE encoder and a PixelCNN decoder."""
  check_spatial(input_shape)
  m = model_config
  check_not_autoregressive_channels('pixel', input_shape, _out_channels(m, input_shape))
  return {'encoder': ConvEncoder(m.latent_dim, 'resnet', m.negative_slope, m.conv_backend),
          'decoder': PixelCNNDecoder(tuple(input_shape), negative_slope=m.negative_slope,
                                     conv_backend=m.conv_backend)}
