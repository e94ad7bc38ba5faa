"""Tomczak & Welling (2018)'s nets: the gated layers, the one-level VAE's gated MLP (`gated_mlp`)
and the two-level models HVAE, ConvHVAE and PixelHVAE (`hvae`, `convhvae`, `pixelhvae`; Eqs. 10-15,
Sec. 5.1).

Four networks per two-level model, all with gated layers (h = (W1 x) * sigmoid(W2 x)) and Gaussian heads whose
log-variance is hard-tanh'ed to [-6, 2]:

  q_psi(z2 | x)        `EncoderZ2`        x -> (mean, log_std) [.., M2]   (also the VampPrior's components)
  q_phi(z1 | x, z2)    `EncoderZ1`        (x, z2) -> (mean, log_std) [.., M1]
  p_lambda(z1 | z2)    `ConditionalPrior` z2 -> (mean, log_std) [.., M1]
  p_theta(x | z1, z2)  `Decoder` / `ConvDecoder` / `PixelDecoder`  -> Bernoulli logits [.., H, W, C]

MLPs (HVAE): two gated layers of 300 units where the paper's code has two, one per input and one joint
layer where it joins two inputs. Convolutional encoders (ConvHVAE, PixelHVAE): five gated convolutions
(32, 32, 64, 64, 6 channels; strides 1, 2, 1, 2, 1) down to H/4 x W/4 x 6. ConvHVAE's decoder: gated
dense layers of z1 and z2 joined into an H x W x C image, then four gated 3x3 convolutions of 64
channels. PixelHVAE's decoder: z1 and z2 each mapped to an H x W x C image by a gated dense layer, the
two images condition the `pixelcnn.PixelCNN` that PixelVAE uses too. Layers with a non-linearity are named
hidden* (the L2 convention of `methods.objectives.l2_penalty`).
"""

from typing import Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vaeprior_jax import likelihoods
from vaeprior_jax.nets import base
from vaeprior_jax.nets import pixelcnn

Array = jax.Array

# He initialisation (Tomczak & Welling's code: Kaiming-normal weights of every linear layer).
he_normal = nn.initializers.variance_scaling(2.0, 'fan_in', 'normal')


class GatedDense(nn.Module):
  """h = (W1 x + b1) * sigmoid(W2 x + b2) (Dauphin et al.'s gating as the non-linearity)."""
  features: int

  @nn.compact
  def __call__(self, x: Array) -> Array:
    h = nn.Dense(self.features, kernel_init=he_normal, name='h')(x)
    g = nn.Dense(self.features, kernel_init=he_normal, name='gate')(x)
    return h * nn.sigmoid(g)


class GatedConv(nn.Module):
  """h = Conv1(x) * sigmoid(Conv2(x)), with PyTorch-style symmetric padding kernel_size // 2."""
  features: int
  kernel_size: int = 3
  stride: int = 1
  conv_backend: str = 'xla'

  @nn.compact
  def __call__(self, x: Array) -> Array:
    pad = self.kernel_size // 2
    conv = lambda name: base.conv_layer(self.conv_backend)(
        self.features, (self.kernel_size,) * 2, (self.stride,) * 2,
        padding=((pad, pad), (pad, pad)), name=name)
    return conv('h')(x) * nn.sigmoid(conv('gate')(x))


# Tomczak & Welling's Gaussian heads: log-variance hard-tanh'ed to [-6, 2].
TOMCZAK_LOG_STD_RANGE = (-3.0, 1.0)


def tomczak_heads(latent_dim: int, name: str = 'heads') -> base.GaussianHeads:
  return base.GaussianHeads(latent_dim, TOMCZAK_LOG_STD_RANGE, he_normal, name=name)


def gated_mlp(h: Array, sizes: Sequence[int], prefix: str = 'hidden') -> Array:
  """GatedDense layers named {prefix}_0, {prefix}_1, ... (call inside a compact method)."""
  for i, units in enumerate(sizes):
    h = GatedDense(units, name=f'{prefix}_{i}')(h)
  return h


class GatedMLPEncoder(nn.Module):
  """Tomczak & Welling's VAE (L = 1) encoder: x -> Flatten -> GatedDense[300 -> 300] -> Gaussian
  heads (log-variance in [-6, 2])."""
  latent_dim: int
  hidden_units: Sequence[int] = (300, 300)

  @nn.compact
  def __call__(self, x: Array) -> Tuple[Array, Array]:
    h = gated_mlp(x.reshape(x.shape[:-3] + (-1,)), self.hidden_units)
    return tomczak_heads(self.latent_dim)(h)


class GatedMLPDecoder(nn.Module):
  """Tomczak & Welling's VAE (L = 1) decoder: z -> GatedDense[300 -> 300] -> Linear[H*W*C] logits."""
  output_shape: Tuple[int, int, int]
  hidden_units: Sequence[int] = (300, 300)
  out_channels: int = 0  # Channels per pixel emitted (0: the image's; see `base.output_shape_of`).

  @nn.compact
  def __call__(self, z: Array) -> Array:
    h = gated_mlp(z, self.hidden_units)
    shape = base.output_shape_of(self.output_shape, self.out_channels)
    logits = nn.Dense(int(np.prod(shape)), kernel_init=he_normal, name='logits')(h)
    return logits.reshape(z.shape[:-1] + shape)


HIDDEN = 300
# (features, kernel, stride) of the gated convolutions of q(z2|x) and of q(z1|x, z2)'s x-branch.
CONV_Z2_STACK = ((32, 7, 1), (32, 3, 2), (64, 5, 1), (64, 3, 2), (6, 3, 1))
CONV_Z1_STACK = ((32, 3, 1), (32, 3, 2), (64, 3, 1), (64, 3, 2), (6, 3, 1))
DECODER_CONV_CHANNELS = (64, 64, 64, 64)


def _flatten_image(x: Array) -> Array:
  return x.reshape(x.shape[:-3] + (-1,))


def _gated_conv_features(x: Array, stack, prefix: str, conv_backend: str) -> Array:
  """Gated convolutions of `stack` over x [..., H, W, C], flattened: [..., H/4 * W/4 * 6]."""
  batch_shape = x.shape[:-3]
  h = x.reshape((-1,) + x.shape[-3:])
  for i, (features, kernel, stride) in enumerate(stack):
    h = GatedConv(features, kernel, stride, conv_backend, name=f'{prefix}_{i}')(h)
  return h.reshape(batch_shape + (-1,))


class EncoderZ2(nn.Module):
  """q(z2|x): x -> GatedDense[300 -> 300] (conv=False) or 5 gated convolutions (conv=True) -> heads."""
  latent_dim: int
  conv: bool = False
  conv_backend: str = 'xla'

  @nn.compact
  def __call__(self, x: Array) -> Tuple[Array, Array]:
    if self.conv:
      h = _gated_conv_features(x, CONV_Z2_STACK, 'hidden', self.conv_backend)
    else:
      h = gated_mlp(_flatten_image(x), (HIDDEN, HIDDEN))
    return tomczak_heads(self.latent_dim)(h)


class EncoderZ1(nn.Module):
  """q(z1|x, z2): h = GatedDense[300](Concat[f(x), g(z2)]) -> heads, with f = GatedDense[300] (MLP) or
  5 gated convolutions (conv), g = GatedDense of the size of f(x)."""
  latent_dim: int
  conv: bool = False
  conv_backend: str = 'xla'

  @nn.compact
  def __call__(self, x: Array, z2: Array) -> Tuple[Array, Array]:
    if self.conv:
      hx = _gated_conv_features(x, CONV_Z1_STACK, 'hidden_x', self.conv_backend)
    else:
      hx = GatedDense(HIDDEN, name='hidden_x')(_flatten_image(x))
    hx = jnp.broadcast_to(hx, z2.shape[:-1] + hx.shape[-1:])
    hz = GatedDense(hx.shape[-1], name='hidden_z2')(z2)
    h = GatedDense(HIDDEN, name='hidden_joint')(jnp.concatenate([hx, hz], axis=-1))
    return tomczak_heads(self.latent_dim)(h)


class ConditionalPrior(nn.Module):
  """p(z1|z2): z2 -> GatedDense[300 -> 300] -> heads."""
  latent_dim: int

  @nn.compact
  def __call__(self, z2: Array) -> Tuple[Array, Array]:
    return tomczak_heads(self.latent_dim)(gated_mlp(z2, (HIDDEN, HIDDEN)))


class Decoder(nn.Module):
  """HVAE's p(x|z1, z2): GatedDense[300](Concat[GatedDense[300](z1), GatedDense[300](z2)]) ->
  Linear[H*W*C] logits."""
  output_shape: Tuple[int, int, int]
  out_channels: int = 0  # Channels per pixel emitted (0: the image's; see `base.output_shape_of`).

  @nn.compact
  def __call__(self, z1: Array, z2: Array) -> Array:
    h = jnp.concatenate([GatedDense(HIDDEN, name='hidden_z1')(z1),
                         GatedDense(HIDDEN, name='hidden_z2')(z2)], axis=-1)
    h = GatedDense(HIDDEN, name='hidden_joint')(h)
    shape = base.output_shape_of(self.output_shape, self.out_channels)
    logits = nn.Dense(int(np.prod(shape)), kernel_init=he_normal, name='logits')(h)
    return logits.reshape(z1.shape[:-1] + shape)


class ConvDecoder(nn.Module):
  """ConvHVAE's p(x|z1, z2): GatedDense[H*W*C](Concat[GatedDense[300](z1), GatedDense[300](z2)]) ->
  UnFlatten -> 4 gated 3x3 convolutions of 64 channels -> LinearConv1x1[C] logits."""
  output_shape: Tuple[int, int, int]
  channels: Sequence[int] = DECODER_CONV_CHANNELS
  conv_backend: str = 'xla'
  out_channels: int = 0  # Channels per pixel emitted (0: the image's; see `base.output_shape_of`).

  @nn.compact
  def __call__(self, z1: Array, z2: Array) -> Array:
    batch_shape = z1.shape[:-1]
    shape = base.output_shape_of(self.output_shape, self.out_channels)
    h = jnp.concatenate([GatedDense(HIDDEN, name='hidden_z1')(z1),
                         GatedDense(HIDDEN, name='hidden_z2')(z2)], axis=-1)
    h = GatedDense(int(np.prod(self.output_shape)), name='hidden_joint')(h)
    h = h.reshape((-1,) + tuple(self.output_shape))
    for i, features in enumerate(self.channels):
      h = GatedConv(features, 3, 1, self.conv_backend, name=f'hidden_conv_{i}')(h)
    logits = base.conv_layer(self.conv_backend)(shape[-1], (1, 1), name='logits')(h)
    return logits.reshape(batch_shape + shape)


class PixelDecoder(nn.Module):
  """PixelHVAE's p(x|z1, z2): a PixelCNN (`pixelcnn.PixelCNN`, shared with PixelVAE) over x, conditioned
  on Concat[UnFlatten(GatedDense[H*W*C](z1)), UnFlatten(GatedDense[H*W*C](z2))]."""
  output_shape: Tuple[int, int, int]
  num_layers: int = 3
  features: int = 0
  dropout_rate: float = 0.5
  conv_backend: str = 'xla'
  autoregressive = True

  @nn.compact
  def __call__(self, z1: Array, z2: Array, x: Array, deterministic: bool = True,
               dropout_rng=None) -> Array:
    batch_shape = z1.shape[:-1]
    shape = tuple(self.output_shape)
    size = int(np.prod(shape))
    cond = jnp.concatenate([
        GatedDense(size, name='hidden_z1')(z1).reshape((-1,) + shape),
        GatedDense(size, name='hidden_z2')(z2).reshape((-1,) + shape)], axis=-1)
    x = jnp.broadcast_to(x, batch_shape + shape).reshape((-1,) + shape)
    logits = pixelcnn.PixelCNN(shape, self.num_layers, self.features, self.dropout_rate,
                           conv_backend=self.conv_backend, name='pixelcnn')(
                               x, cond, deterministic, dropout_rng)
    return logits.reshape(batch_shape + shape)


NETS = ('hvae', 'convhvae', 'pixelhvae')


def _two_level_builder(decoder_fn, conv: bool, doc: str):
  """The builder of a two-level model: the encoders (convolutional or not) and conditional prior
  every one of them has, and the decoder `decoder_fn(model_config, input_shape, out_channels)`."""
  def build(model_config, input_shape):
    m = model_config
    z1_dim = m.z1_dim or m.latent_dim
    input_shape = tuple(int(s) for s in input_shape)
    if conv:
      base.check_image_shape(input_shape, 4, m.net)
    return {'encoder_z2': EncoderZ2(m.latent_dim, conv, m.conv_backend),
            'encoder_z1': EncoderZ1(z1_dim, conv, m.conv_backend),
            'conditional_prior': ConditionalPrior(z1_dim),
            'decoder': decoder_fn(m, input_shape,
                                  likelihoods.output_channels(m, input_shape[-1])),
            'z1_dim': z1_dim}
  build.__doc__ = doc
  return build


def _pixel_decoder(m, input_shape, out_channels):
  base.check_not_autoregressive_channels(m.net, input_shape, out_channels)
  return PixelDecoder(input_shape, m.pixelcnn_layers, m.pixelcnn_features,
                      conv_backend=m.conv_backend)


base.REGISTRY.register('hvae', _two_level_builder(
    lambda m, shape, out: Decoder(shape, out_channels=out), False, 'HVAE (MLPs).'), levels=2)
base.REGISTRY.register('convhvae', _two_level_builder(
    lambda m, shape, out: ConvDecoder(shape, conv_backend=m.conv_backend, out_channels=out), True,
    'ConvHVAE.'), levels=2)
base.REGISTRY.register('pixelhvae', _two_level_builder(_pixel_decoder, True, 'PixelHVAE.'),
                       levels=2, autoregressive=True)


@base.REGISTRY.register('gated_mlp')
def _gated_mlp(model_config, input_shape):
  """Tomczak & Welling's VAE (L = 1)."""
  input_shape = tuple(int(s) for s in input_shape)
  return {'encoder': GatedMLPEncoder(model_config.latent_dim),
          'decoder': GatedMLPDecoder(input_shape, out_channels=likelihoods.output_channels(
              model_config, input_shape[-1]))}
