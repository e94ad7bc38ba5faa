"""The first-stage networks of Dai & Wipf (2019): the "InfoGAN" neutral architecture of their Table 1
(`model.net=infogan`) and the ResNet of their Fig. 11 (`model.net=dai_resnet`), as in the authors'
code (daib13/TwoStageVAE, `network/`). Both have batch norm, whose statistics are non-trainable
state (the 'batch_stats' collection, kept in the train state's `model_state` and in checkpoints); the
InfoGAN encoder also has spectral normalisation, whose power-iteration vector u and last sigma are
kept there too.

Both nets take `train`: True uses the batch's statistics and updates the running averages (and
spectral norm's u), False uses the running averages and leaves every variable unchanged (what
evaluation, generation and the second stage's inputs use). Decoders return the pre-sigmoid image
[..., H, W, C]; the likelihood maps it to the mean (`model.mean_activation=sigmoid` for the Gaussian,
logits for the Bernoulli). Layers followed by a non-linearity are named hidden* (the L2 convention of
`methods.objectives.l2_penalty`, so the paper's weight decay reaches them).
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
    'model.net=dai_resnet',
    model=dict(
        dai_resnet_base_dim=16,  # net=dai_resnet (Dai & Wipf's Fig. 11): channels at full size,
        dai_resnet_num_scales=4,  # ... encoder scale blocks (paper: 3, CelebA 4),
        dai_resnet_blocks_per_scale=1,  # ... residual blocks per scale block (paper: 2),
        dai_resnet_fc_dim=512,  # ... the encoder's dense residual block,
        dai_resnet_pooling='mean',  # ... before it: mean over H, W (code) | flatten (paper)
    ),
)


# The code's initialisers: conv2d truncated normal, linear and deconv2d normal, all stddev 0.02.
_NORMAL = nn.initializers.normal(0.02)
_TRUNCATED = nn.initializers.truncated_normal(0.02)
# Its batch_norm: zero-debiased moving averages with decay 0.999, epsilon 1e-5, biased batch variance.
_BN_MOMENTUM = 0.999
_BN_EPSILON = 1e-5
# tf.layers' default (the code's ResNet): Glorot uniform kernels.
_GLOROT = nn.initializers.glorot_uniform()


class BatchNorm(nn.Module):
  """The code's batch_norm: in training, normalise by the batch's mean and biased variance (over all
  axes but the last) and update moving averages; in inference, normalise by the averages. Then
  scale and shift (learned, from 1 and 0).

  The averages are TF's `assign_moving_average` with its default zero_debias=True: an accumulator
  that starts at 0, a = decay a + (1 - decay) x, divided by 1 - decay^t after t updates. They are
  exact averages from the first step, where a plain moving average from the initial (0, 1) would
  still be 37% of the way off after 1,000 steps at decay 0.999 (flax's nn.BatchNorm). Kept in
  'batch_stats': the debiased 'mean' and 'var' inference uses, the accumulators and the count t.
  """
  decay: float = _BN_MOMENTUM
  epsilon: float = _BN_EPSILON
  use_running_average: bool = False

  @nn.compact
  def __call__(self, x: Array) -> Array:
    features = x.shape[-1]
    stat = lambda name, init: self.variable('batch_stats', name, init, (features,), jnp.float32)
    mean, var = stat('mean', jnp.zeros), stat('var', jnp.ones)
    acc_mean, acc_var = stat('accumulated_mean', jnp.zeros), stat('accumulated_var', jnp.zeros)
    count = self.variable('batch_stats', 'count', lambda: jnp.zeros((), jnp.float32))
    if self.use_running_average:
      m, v = mean.value, var.value
    else:
      axes = tuple(range(x.ndim - 1))
      m = jnp.mean(x, axis=axes)
      v = jnp.mean(jnp.square(x - m), axis=axes)
      if not self.is_initializing():
        t = count.value + 1
        acc_mean.value = self.decay * acc_mean.value + (1 - self.decay) * m
        acc_var.value = self.decay * acc_var.value + (1 - self.decay) * v
        debias = 1 - self.decay ** t
        mean.value, var.value, count.value = acc_mean.value / debias, acc_var.value / debias, t
    scale = self.param('scale', nn.initializers.ones, (features,))
    bias = self.param('bias', nn.initializers.zeros, (features,))
    return (x - m) * (scale * jax.lax.rsqrt(v + self.epsilon)) + bias


def _batch_norm(train: bool, name: str) -> BatchNorm:
  return BatchNorm(use_running_average=not train, name=name)


def _images(x: Array) -> Tuple[Array, Tuple[int, ...]]:
  """x [..., H, W, C] as [N, H, W, C], and its batch shape."""
  return x.reshape((-1,) + x.shape[-3:]), x.shape[:-3]


class InfoGANEncoder(nn.Module):
  """x -> Conv[64, 4x4/2] -> LReLU -> Conv[128, 4x4/2] -> BN -> LReLU -> Flatten -> FC[1024] -> BN
  -> LReLU -> FC[2 latent_dim]: mean and std = 1e-6 + softplus, returned as (mean, log std). Every
  layer's kernel is spectrally normalised (one power iteration per call, as the code)."""
  latent_dim: int
  negative_slope: float = 0.2

  has_train_mode = True

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Tuple[Array, Array]:
    h, batch_shape = _images(x)
    sn = lambda layer: nn.SpectralNorm(layer, name=f'sn_{layer.name}')
    lrelu = lambda v: nn.leaky_relu(v, self.negative_slope)
    conv = lambda f, name: nn.Conv(f, (4, 4), (2, 2), padding='SAME', kernel_init=_TRUNCATED,
                                   name=name)
    h = lrelu(sn(conv(64, 'hidden_0'))(h, update_stats=train))
    h = sn(conv(128, 'hidden_1'))(h, update_stats=train)
    h = lrelu(_batch_norm(train, 'bn_1')(h))
    h = h.reshape((h.shape[0], -1))
    h = sn(nn.Dense(1024, kernel_init=_NORMAL, name='hidden_2'))(h, update_stats=train)
    h = lrelu(_batch_norm(train, 'bn_2')(h))
    out = sn(nn.Dense(2 * self.latent_dim, kernel_init=_NORMAL, name='heads'))(
        h, update_stats=train)
    mean, std = out[:, :self.latent_dim], 1e-6 + jax.nn.softplus(out[:, self.latent_dim:])
    shape = batch_shape + (self.latent_dim,)
    return mean.reshape(shape), jnp.log(std).reshape(shape)


class InfoGANDecoder(nn.Module):
  """z -> FC[1024] -> BN -> ReLU -> FC[128 (H/4)(W/4)] -> BN -> ReLU -> DeConv[64, 4x4/2] -> BN ->
  ReLU -> DeConv[C, 4x4/2]: the pre-sigmoid image [..., H, W, C] (no spectral normalisation, as the
  code's decoder)."""
  output_shape: Tuple[int, int, int]
  out_channels: int = 0  # Channels per pixel emitted (0: the image's; see `base.output_shape_of`).

  has_train_mode = True

  @nn.compact
  def __call__(self, z: Array, train: bool = False) -> Array:
    shape = base.output_shape_of(self.output_shape, self.out_channels)
    height, width, channels = shape
    h = z.reshape((-1, z.shape[-1]))
    h = nn.Dense(1024, kernel_init=_NORMAL, name='hidden_0')(h)
    h = nn.relu(_batch_norm(train, 'bn_0')(h))
    h = nn.Dense(128 * (height // 4) * (width // 4), kernel_init=_NORMAL, name='hidden_1')(h)
    h = nn.relu(_batch_norm(train, 'bn_1')(h)).reshape((-1, height // 4, width // 4, 128))
    deconv = lambda f, name: nn.ConvTranspose(f, (4, 4), (2, 2), padding='SAME',
                                              kernel_init=_NORMAL, name=name)
    h = nn.relu(_batch_norm(train, 'bn_2')(deconv(64, 'hidden_2')(h)))
    out = deconv(channels, 'out')(h)
    return out.reshape(z.shape[:-1] + shape)


# ------------------------------------------------------------------------------- ResNet (Fig. 11)

class ResBlock(nn.Module):
  """The code's res_block: `depth` times (BN -> ReLU -> Conv[features, k]), plus a k x k
  convolution of the input as the shortcut."""
  features: int
  depth: int = 2
  kernel_size: int = 3

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    k = (self.kernel_size, self.kernel_size)
    h = x
    for i in range(self.depth):
      h = nn.relu(_batch_norm(train, f'bn_{i}')(h))
      h = nn.Conv(self.features, k, padding='SAME', kernel_init=_GLOROT, name=f'hidden_{i}')(h)
    return h + nn.Conv(self.features, k, padding='SAME', kernel_init=_GLOROT, name='shortcut')(x)


class ScaleBlock(nn.Module):
  """`blocks` residual blocks at one resolution (Fig. 11, left)."""
  features: int
  blocks: int = 1
  depth: int = 2
  kernel_size: int = 3

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    for i in range(self.blocks):
      x = ResBlock(self.features, self.depth, self.kernel_size, name=f'block_{i}')(x, train)
    return x


class DenseResBlock(nn.Module):
  """The code's res_fc_block: `depth` times (ReLU -> Dense[features]), plus Dense[features](x)."""
  features: int
  depth: int = 2

  @nn.compact
  def __call__(self, x: Array) -> Array:
    h = x
    for i in range(self.depth):
      h = nn.Dense(self.features, kernel_init=_GLOROT, name=f'hidden_{i}')(nn.relu(h))
    return h + nn.Dense(self.features, kernel_init=_GLOROT, name='shortcut')(x)


class ResNetEncoder(nn.Module):
  """x -> Conv[base_dim, 3x3] -> `num_scales` scale blocks, a stride-2 convolution doubling the
  channels between them -> global mean over H, W (`pooling='mean'`, the code) or flatten
  ('flatten', the paper) -> a dense residual block of `fc_dim` -> Linear heads (mean, log std)."""
  latent_dim: int
  base_dim: int = 16
  num_scales: int = 4
  blocks_per_scale: int = 1
  fc_dim: int = 512
  pooling: str = 'mean'
  kernel_size: int = 3

  has_train_mode = True

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Tuple[Array, Array]:
    h, batch_shape = _images(x)
    k = (self.kernel_size, self.kernel_size)
    dim = self.base_dim
    h = nn.Conv(dim, k, padding='SAME', kernel_init=_GLOROT, name='conv_in')(h)
    for i in range(self.num_scales):
      h = ScaleBlock(dim, self.blocks_per_scale, kernel_size=self.kernel_size,
                     name=f'scale_{i}')(h, train)
      if i != self.num_scales - 1:
        dim *= 2
        h = nn.Conv(dim, k, (2, 2), padding='SAME', kernel_init=_GLOROT, name=f'down_{i}')(h)
    if self.pooling == 'mean':
      h = jnp.mean(h, axis=(1, 2))
    elif self.pooling == 'flatten':
      h = h.reshape((h.shape[0], -1))
    else:
      raise ValueError(f'Unknown model.dai_resnet_pooling {self.pooling!r}; allowed: mean, '
                       'flatten.')
    h = DenseResBlock(self.fc_dim, name='dense_block')(h)
    mean = nn.Dense(self.latent_dim, kernel_init=_GLOROT, name='mean')(h)
    log_std = nn.Dense(self.latent_dim, kernel_init=_GLOROT, name='log_std')(h)
    shape = batch_shape + (self.latent_dim,)
    return mean.reshape(shape), log_std.reshape(shape)


def resnet_decoder_scales(side: int, base_dim: int) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
  """(sides, channels) of the ResNet decoder's resolutions, smallest first.

  The code starts at 2 x 2 and doubles up to the image side, which must be a power of two; its
  channels are base_dim at the image side, doubling per halving, at most 1024. Here the start is
  side / 2^k for the largest k leaving a side >= 2: 2 for powers of two (the code's nets), 7 for
  28 (7 -> 14 -> 28).
  """
  sides = [side]
  while sides[-1] % 2 == 0 and sides[-1] // 2 >= 2:
    sides.append(sides[-1] // 2)
  channels = [min(base_dim * 2 ** i, 1024) for i in range(len(sides))]
  return tuple(reversed(sides)), tuple(reversed(channels))


class ResNetDecoder(nn.Module):
  """z -> Dense[s0 s0 c0] -> reshape [s0, s0, c0] -> (DeConv[c, 3x3/2] -> scale block) per doubling
  -> Conv[C, 3x3]: the pre-sigmoid image; sides and channels from `resnet_decoder_scales`."""
  output_shape: Tuple[int, int, int]
  base_dim: int = 16
  blocks_per_scale: int = 1
  kernel_size: int = 3
  out_channels: int = 0  # Channels per pixel emitted (0: the image's; see `base.output_shape_of`).

  has_train_mode = True

  @nn.compact
  def __call__(self, z: Array, train: bool = False) -> Array:
    shape = base.output_shape_of(self.output_shape, self.out_channels)
    height, width, channels = shape
    if height != width:
      raise ValueError(f'model.net=dai_resnet needs square images, got {self.output_shape}.')
    sides, dims = resnet_decoder_scales(height, self.base_dim)
    k = (self.kernel_size, self.kernel_size)
    h = z.reshape((-1, z.shape[-1]))
    h = nn.Dense(sides[0] * sides[0] * dims[0], kernel_init=_GLOROT, name='dense_in')(h)
    h = h.reshape((-1, sides[0], sides[0], dims[0]))
    for i in range(len(sides) - 1):
      h = nn.ConvTranspose(dims[i + 1], k, (2, 2), padding='SAME', kernel_init=_GLOROT,
                           name=f'up_{i}')(h)
      h = ScaleBlock(dims[i + 1], self.blocks_per_scale, kernel_size=self.kernel_size,
                     name=f'scale_{i}')(h, train)
    out = nn.Conv(channels, k, padding='SAME', kernel_init=_GLOROT, name='out')(h)
    return out.reshape(z.shape[:-1] + shape)


def _infogan(model_config, input_shape):
  base.check_image_shape(input_shape, 4, 'infogan')
  return {'encoder': InfoGANEncoder(model_config.latent_dim, model_config.negative_slope),
          'decoder': InfoGANDecoder(tuple(input_shape), likelihoods.output_channels(
              model_config, input_shape[-1]))}


def _resnet(model_config, input_shape):
  base.check_image_shape(input_shape, 2, 'dai_resnet')
  m = model_config
  return {'encoder': ResNetEncoder(m.latent_dim, m.dai_resnet_base_dim, m.dai_resnet_num_scales,
                                   m.dai_resnet_blocks_per_scale, m.dai_resnet_fc_dim,
                                   m.dai_resnet_pooling),
          'decoder': ResNetDecoder(tuple(input_shape), m.dai_resnet_base_dim,
                                   m.dai_resnet_blocks_per_scale,
                                   out_channels=likelihoods.output_channels(m, input_shape[-1]))}


NETS = ('infogan', 'dai_resnet')
base.REGISTRY.register('infogan', _infogan)
base.REGISTRY.register('dai_resnet', _resnet)


# ------------------------------------------------------------------ vectors (Dai & Wipf's second stage)

class SecondStageEncoder(nn.Module):
  """Dai & Wipf's second-stage encoder on latent vectors u [..., d]: `num_layers` Dense[units] + ReLU,
  then the input concatenated to the last hidden layer, then the Gaussian heads (their code's
  `second stage`; Table 1: 3 layers of 1024, 2048 in the ResNet runs). Every Dense starts from
  Glorot-uniform kernels, tf.layers.dense's default, which the code uses."""
  latent_dim: int
  units: int = 1024
  num_layers: int = 3

  @nn.compact
  def __call__(self, x: Array) -> Tuple[Array, Array]:
    h = x
    for i in range(self.num_layers):
      h = nn.relu(nn.Dense(self.units, kernel_init=_GLOROT, name=f'hidden_{i}')(h))
    return base.GaussianHeads(self.latent_dim, kernel_init=_GLOROT, name='heads')(
        jnp.concatenate([x, h], axis=-1))


class SecondStageDecoder(nn.Module):
  """The second-stage decoder: z -> `num_layers` Dense[units] + ReLU -> Concat[z, h] -> Linear[d], the
  mean of the Gaussian over the first stage's latents (its scale is the likelihood's gamma_z)."""
  output_shape: Tuple[int]
  units: int = 1024
  num_layers: int = 3

  @nn.compact
  def __call__(self, z: Array) -> Array:
    h = z
    for i in range(self.num_layers):
      h = nn.relu(nn.Dense(self.units, kernel_init=_GLOROT, name=f'hidden_{i}')(h))
    return nn.Dense(self.output_shape[-1], kernel_init=_GLOROT, name='mean')(
        jnp.concatenate([z, h], axis=-1))


def _second_stage(model_config, input_shape):
  if len(input_shape) != 1:
    raise ValueError(f'model.net=second_stage models latent vectors [d]; got an input shape '
                     f'{tuple(input_shape)}.')
  return {'encoder': SecondStageEncoder(model_config.latent_dim, model_config.second_stage_units,
                                        model_config.second_stage_layers),
          'decoder': SecondStageDecoder(tuple(input_shape), model_config.second_stage_units,
                                        model_config.second_stage_layers)}


base.REGISTRY.register('second_stage', _second_stage)
