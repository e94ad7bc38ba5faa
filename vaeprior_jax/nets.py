"""Encoder and decoder networks of Xu et al. (2019), App. B.2.

Encoders map x [B, H, W, C] to the base Gaussian's (mean, log_std), each [B, latent_dim], through
h_phi(x) and two separate Linear heads. Decoders map z [B, latent_dim] to Bernoulli logits [B, H, W, C].
All non-linear layers use leaky ReLU. Modules whose names start with `hidden` hold the kernels of the
non-linear layers (the ones the paper's L2 regularisation applies to, see `training.l2_penalty`).
"""

from typing import Sequence, Tuple

import flax.linen as nn
import jax

Array = jax.Array

# Conv/Resnet stacks of App. B.2 for 28x28 inputs:
#   encoder  28x28x32 -> 28x28x32 -> 14x14x64 -> 14x14x64 -> 7x7x64 -> 7x7x16
#   decoder  7x7x16 -> 7x7x64 -> 14x14x64 -> 14x14x64 -> 28x28x32 -> 28x28x32
# Strides follow from the shapes; any H, W divisible by 4 works (32x32 gives 8x8 in the middle).
ENCODER_STACK = ((32, 1), (32, 1), (64, 2), (64, 1), (64, 2), (16, 1))
DECODER_STACK = ((64, 1), (64, 2), (64, 1), (32, 2), (32, 1))
BOTTLENECK_CHANNELS = 16


class GaussianHeads(nn.Module):
  """mean = Linear[d](h), log_std = Linear[d](h)."""
  latent_dim: int

  @nn.compact
  def __call__(self, h: Array) -> Tuple[Array, Array]:
    return nn.Dense(self.latent_dim, name='mean')(h), nn.Dense(self.latent_dim, name='log_std')(h)


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

  @nn.compact
  def __call__(self, z: Array) -> Array:
    h = z
    for i, units in enumerate(self.hidden_units):
      h = nn.leaky_relu(nn.Dense(units, name=f'hidden_{i}')(h), self.negative_slope)
    size = self.output_shape[0] * self.output_shape[1] * self.output_shape[2]
    logits = nn.Dense(size, name='logits')(h)
    return logits.reshape(z.shape[:-1] + tuple(self.output_shape))


class ResidualBlock(nn.Module):
  """Pre-activation residual block: y = shortcut(x) + Conv(act(Conv_s(act(x)))).

  The shortcut is the identity, or a 1x1 (transposed) convolution when the shape changes. With
  `transpose`, the strided convolutions are transposed convolutions (upsampling, the DeResnet layer).
  """
  features: int
  stride: int
  transpose: bool = False
  negative_slope: float = 0.2

  @nn.compact
  def __call__(self, x: Array) -> Array:
    conv = nn.ConvTranspose if self.transpose else nn.Conv
    strides = (self.stride, self.stride)
    shortcut = x
    if self.stride != 1 or x.shape[-1] != self.features:
      shortcut = conv(self.features, (1, 1), strides, padding='SAME', name='shortcut')(x)
    h = nn.leaky_relu(x, self.negative_slope)
    h = conv(self.features, (3, 3), strides, padding='SAME', name='conv_0')(h)
    h = nn.leaky_relu(h, self.negative_slope)
    h = nn.Conv(self.features, (3, 3), padding='SAME', name='conv_1')(h)
    return shortcut + h


def _conv_stack(h: Array, stack, block: str, transpose: bool, negative_slope: float) -> Array:
  """Applies the non-linear (de)conv or (de)resnet layers of `stack`, named hidden_0, hidden_1, ..."""
  for i, (features, stride) in enumerate(stack):
    name = f'hidden_{i}'
    if block == 'resnet':
      h = ResidualBlock(features, stride, transpose, negative_slope, name=name)(h)
    else:
      conv = nn.ConvTranspose if transpose else nn.Conv
      h = conv(features, (3, 3), (stride, stride), padding='SAME', name=name)(h)
    h = nn.leaky_relu(h, negative_slope) if block == 'conv' else h
  # A resnet stack is a non-linear layer too: close it with the activation.
  return nn.leaky_relu(h, negative_slope) if block == 'resnet' else h


def _check_spatial(shape: Tuple[int, int, int]):
  if len(shape) != 3 or shape[0] % 4 or shape[1] % 4:
    raise ValueError(f'Convolutional nets need an input shape (H, W, C) with H and W divisible by 4, '
                     f'got {tuple(shape)}.')


class ConvEncoder(nn.Module):
  """h_phi(x) = x -> {Conv|Resnet}[28x28x32 -> ... -> 7x7x16] -> Flatten (App. B.2)."""
  latent_dim: int
  block: str = 'resnet'  # 'conv' (ConvVAE) or 'resnet' (ResnetVAE)
  negative_slope: float = 0.2

  @nn.compact
  def __call__(self, x: Array) -> Tuple[Array, Array]:
    _check_spatial(x.shape[-3:])
    batch_shape = x.shape[:-3]
    h = x.reshape((-1,) + x.shape[-3:])
    h = _conv_stack(h, ENCODER_STACK, self.block, False, self.negative_slope)
    h = h.reshape(batch_shape + (-1,))
    return GaussianHeads(self.latent_dim, name='heads')(h)


class ConvDecoder(nn.Module):
  """h_theta(z) = z -> Dense[H/4*W/4*16] -> UnFlatten -> {DeConv|DeResnet}[7x7x64 -> ... -> 28x28x32];
  logits = LinearConv1x1[H x W x C]."""
  output_shape: Tuple[int, int, int]
  block: str = 'resnet'
  negative_slope: float = 0.2

  @nn.compact
  def __call__(self, z: Array) -> Array:
    _check_spatial(self.output_shape)
    height, width, channels = self.output_shape
    small = (height // 4, width // 4, BOTTLENECK_CHANNELS)
    h = nn.Dense(small[0] * small[1] * small[2], name='hidden_dense')(z)
    h = nn.leaky_relu(h, self.negative_slope).reshape((-1,) + small)
    h = _conv_stack(h, DECODER_STACK, self.block, True, self.negative_slope)
    logits = nn.Conv(channels, (1, 1), name='logits')(h)
    return logits.reshape(z.shape[:-1] + tuple(self.output_shape))


NETS = ('dense', 'conv', 'resnet')


def create(name: str, latent_dim: int, input_shape: Tuple[int, int, int],
           negative_slope: float = 0.2) -> Tuple[nn.Module, nn.Module]:
  """Returns (encoder, decoder) for the net called `name` (one of NETS)."""
  input_shape = tuple(int(s) for s in input_shape)
  if name == 'dense':
    return (DenseEncoder(latent_dim, negative_slope=negative_slope),
            DenseDecoder(input_shape, negative_slope=negative_slope))
  if name in ('conv', 'resnet'):
    _check_spatial(input_shape)
    return (ConvEncoder(latent_dim, name, negative_slope),
            ConvDecoder(input_shape, name, negative_slope))
  raise ValueError(f'Unknown net {name!r}; allowed: {", ".join(NETS)}.')
