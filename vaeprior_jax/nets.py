"""Encoder and decoder networks of Xu et al. (2019), App. B.2.

Encoders map x [B, H, W, C] to the base Gaussian's (mean, log_std), each [B, latent_dim], through
h_phi(x) and two separate Linear heads. Decoders map z [B, latent_dim] to Bernoulli logits [B, H, W, C].
All non-linear layers use leaky ReLU. Modules whose names start with `hidden` hold the kernels of the
non-linear layers (the ones the paper's L2 regularisation applies to, see `training.l2_penalty`).
"""

import dataclasses
import functools
from typing import Callable, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vaeprior_jax import registry
from vaeprior_jax.cpu import conv_transpose as cpu_conv_transpose

Array = jax.Array

# Conv/Resnet stacks of App. B.2 for 28x28 inputs:
#   encoder  28x28x32 -> 28x28x32 -> 14x14x64 -> 14x14x64 -> 7x7x64 -> 7x7x16
#   decoder  7x7x16 -> 7x7x64 -> 14x14x64 -> 14x14x64 -> 28x28x32 -> 28x28x32
# Strides follow from the shapes; any H, W divisible by 4 works (32x32 gives 8x8 in the middle).
ENCODER_STACK = ((32, 1), (32, 1), (64, 2), (64, 1), (64, 2), (16, 1))
DECODER_STACK = ((64, 1), (64, 2), (64, 1), (32, 2), (32, 1))
BOTTLENECK_CHANNELS = 16


class GaussianHeads(nn.Module):
  """mean = Linear[d](h), log_std = Linear[d](h), optionally clipped to `log_std_range` (a hard tanh,
  as Tomczak & Welling's log-variance in [-6, 2], i.e. log_std in [-3, 1])."""
  latent_dim: int
  log_std_range: Optional[Tuple[float, float]] = None
  kernel_init: Callable = nn.linear.default_kernel_init

  @nn.compact
  def __call__(self, h: Array) -> Tuple[Array, Array]:
    mean = nn.Dense(self.latent_dim, kernel_init=self.kernel_init, name='mean')(h)
    log_std = nn.Dense(self.latent_dim, kernel_init=self.kernel_init, name='log_std')(h)
    if self.log_std_range is not None:
      log_std = jnp.clip(log_std, *self.log_std_range)
    return mean, log_std


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


# ------------------------------------------------------------------ convolutions, by backend

@dataclasses.dataclass(frozen=True)
class Convolutions:
  """How a backend computes the nets' convolutions (all with flax's parameter layouts, so a
  checkpoint moves between backends).

  conv: a layer class called as conv(features, kernel_size, strides, padding, name=...), nn.Conv's
    parameters.
  stride1: (x, kernel, padding) -> the stride-1 convolution of x [N, H, W, C] with kernel HWIO, no
    bias.
  transpose_same: (x, kernel, strides) -> lax.conv_transpose(x, kernel, strides, 'SAME') with
    flax's kernel [kh, kw, C, F] (not flipped).
  unavailable_reason: () -> '' where it can run here, else why not.
  """
  conv: Callable
  stride1: Callable
  transpose_same: Callable
  unavailable_reason: Callable[[], str] = lambda: ''


def _lax_stride1(x, kernel, padding):
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), padding,
                                      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def lax_conv_transpose_same(x: Array, kernel: Array, strides: Tuple[int, int]) -> Array:
  """lax.conv_transpose(x, kernel, strides, 'SAME'), flax's kernel layout (nn.ConvTranspose)."""
  return jax.lax.conv_transpose(x, kernel, tuple(strides), 'SAME',
                                dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def _xla_transpose_same(x, kernel, strides):
  """lax's transposed convolution, computed per output phase on the CPU (`cpu.conv_transpose`)."""
  strides = tuple(strides)
  return jax.lax.platform_dependent(
      x, kernel,
      cpu=lambda x_, k_: cpu_conv_transpose.per_phase(x_, k_, strides, _lax_stride1),
      default=lambda x_, k_: lax_conv_transpose_same(x_, k_, strides))


# Who computes the convolutions, by name (`model.conv_backend`): 'xla' (flax's nn.Conv; every
# platform), and those registered by `vaeprior_jax.cpu.backends` or by user code.
CONV_BACKENDS = registry.Registry('conv_backend')
CONV_BACKENDS.register('xla', Convolutions(nn.Conv, _lax_stride1, _xla_transpose_same))


def conv_layer(backend: str):
  """The convolution layer class of `backend` (a name of CONV_BACKENDS), called as
  layer(features, kernel_size, strides, padding, name=...)."""
  return CONV_BACKENDS.get(backend).conv


def conv_transpose_same(x: Array, kernel: Array, strides: Tuple[int, int],
                        conv_backend: str = 'xla') -> Array:
  """lax.conv_transpose(x, kernel, strides, 'SAME') for x [N, H, W, C], kernel [kh, kw, C, F] (HWIO,
  not flipped: flax's nn.ConvTranspose), output [N, H*sh, W*sw, F], by `conv_backend`. On the CPU
  it is computed per output phase (`cpu.conv_transpose`), elsewhere by lax."""
  in_features = kernel.shape[2]
  if x.ndim != 4 or x.shape[-1] != in_features:
    raise ValueError(f'conv_transpose_same needs x [N, H, W, {in_features}], got {x.shape}.')
  return CONV_BACKENDS.get(conv_backend).transpose_same(x, kernel, tuple(strides))


class ConvTranspose(nn.Module):
  """nn.ConvTranspose(features, kernel_size, strides, padding='SAME') with the same parameters
  ('kernel' [kh, kw, C, F] with lecun-normal init, 'bias' [F] zeros) and the same function,
  computed by `conv_transpose_same` (its stride-1 convolutions by `conv_backend`). Input
  [N, H, W, C]."""
  features: int
  kernel_size: Tuple[int, int]
  strides: Tuple[int, int] = (1, 1)
  padding: str = 'SAME'
  conv_backend: str = 'xla'

  @nn.compact
  def __call__(self, x: Array) -> Array:
    if self.padding != 'SAME':
      raise ValueError(f'ConvTranspose supports padding="SAME" only, got {self.padding!r}.')
    kernel = self.param('kernel', nn.linear.default_kernel_init,
                        tuple(self.kernel_size) + (x.shape[-1], self.features), jnp.float32)
    bias = self.param('bias', nn.initializers.zeros_init(), (self.features,), jnp.float32)
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias)
    return conv_transpose_same(x, kernel, tuple(self.strides), self.conv_backend) + bias


def _strided_layer(conv_backend: str, transpose: bool):
  """The layer class of a (de)conv stack's strided convolutions: transposed (upsampling) or not."""
  if transpose:
    return functools.partial(ConvTranspose, conv_backend=conv_backend)
  return conv_layer(conv_backend)


class ResidualBlock(nn.Module):
  """Pre-activation residual block: y = shortcut(x) + Conv(act(Conv_s(act(x)))).

  The shortcut is the identity, or a 1x1 (transposed) convolution when the shape changes. With
  `transpose`, the strided convolutions are transposed convolutions (upsampling, the DeResnet layer).
  `zero_init` starts every kernel at 0 (VAEPP's code does so for its convolutional latent heads):
  the block outputs its biases, and only the shortcut gets a gradient at first.
  """
  features: int
  stride: int
  transpose: bool = False
  negative_slope: float = 0.2
  conv_backend: str = 'xla'
  kernel_size: int = 3
  zero_init: bool = False

  @nn.compact
  def __call__(self, x: Array) -> Array:
    plain = conv_layer(self.conv_backend)
    conv = _strided_layer(self.conv_backend, self.transpose)
    if self.zero_init:
      if self.transpose:
        raise ValueError('ResidualBlock: zero_init is for non-transposed blocks.')
      plain = conv = functools.partial(plain, kernel_init=nn.initializers.zeros)
    strides = (self.stride, self.stride)
    kernel = (self.kernel_size, self.kernel_size)
    shortcut = x
    if self.stride != 1 or x.shape[-1] != self.features:
      shortcut = conv(self.features, (1, 1), strides, padding='SAME', name='shortcut')(x)
    h = nn.leaky_relu(x, self.negative_slope)
    h = conv(self.features, kernel, strides, padding='SAME', name='conv_0')(h)
    h = nn.leaky_relu(h, self.negative_slope)
    h = plain(self.features, kernel, padding='SAME', name='conv_1')(h)
    return shortcut + h


def residual_stack(h: Array, stack, negative_slope: float, transpose: bool = False) -> Array:
  """`ResidualBlock`s of `stack`, (features, stride, kernel size) each, named hidden_0, hidden_1, ...
  (so that `objectives.l2_penalty` covers them); no activation after the last (VAEPP's code)."""
  for i, (features, stride, kernel) in enumerate(stack):
    h = ResidualBlock(features, stride, transpose=transpose, negative_slope=negative_slope,
                      kernel_size=kernel, name=f'hidden_{i}')(h)
  return h


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


def check_spatial(shape: Tuple[int, int, int]):
  """Raises ValueError unless `shape` is (H, W, C) with H and W divisible by 4 (two stride-2 stages)."""
  if len(shape) != 3 or shape[0] % 4 or shape[1] % 4:
    raise ValueError(f'Convolutional nets need an input shape (H, W, C) with H and W divisible by 4, '
                     f'got {tuple(shape)}.')


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

  @nn.compact
  def __call__(self, z: Array) -> Array:
    check_spatial(self.output_shape)
    h = _deconv_trunk(z, self.output_shape, self.block, self.negative_slope, self.conv_backend)
    logits = conv_layer(self.conv_backend)(self.output_shape[-1], (1, 1), name='logits')(h)
    return logits.reshape(z.shape[:-1] + tuple(self.output_shape))


# ------------------------------------------------------------------------------------ PixelCNN

def down_shift(x: Array) -> Array:
  """Moves rows down by one (row 0 becomes zeros): position (r, c) then holds row r - 1."""
  return jnp.pad(x[:, :-1], ((0, 0), (1, 0), (0, 0), (0, 0)))


def right_shift(x: Array) -> Array:
  """Moves columns right by one (column 0 becomes zeros)."""
  return jnp.pad(x[:, :, :-1], ((0, 0), (0, 0), (1, 0), (0, 0)))


class ShiftedConv(nn.Module):
  """A convolution whose output at (r, c) sees only input rows <= r ('down': columns c - w//2 .. c +
  w//2) or rows <= r and columns <= c ('down_right'), by padding above (and left) and a VALID conv
  (PixelCNN++'s down_shifted_conv2d / down_right_shifted_conv2d)."""
  features: int
  kernel_size: Tuple[int, int]
  direction: str  # 'down' or 'down_right'
  conv_backend: str = 'xla'

  @nn.compact
  def __call__(self, x: Array) -> Array:
    kh, kw = self.kernel_size
    if self.direction == 'down':
      pad = ((0, 0), (kh - 1, 0), ((kw - 1) // 2, (kw - 1) // 2), (0, 0))
    elif self.direction == 'down_right':
      pad = ((0, 0), (kh - 1, 0), (kw - 1, 0), (0, 0))
    else:
      raise ValueError(f'Unknown shift direction {self.direction!r}; allowed: down, down_right.')
    return conv_layer(self.conv_backend)(self.features, self.kernel_size, padding='VALID',
                                         name='conv')(jnp.pad(x, pad))


class GatedResnet(nn.Module):
  """PixelCNN++'s gated residual layer: x + a * sigmoid(b), [a, b] = Conv(drop(act(Conv(act(x)) +
  Nin(act(aux))))) + Nin(cond). The convolutions are ShiftedConvs in `direction`."""
  direction: str
  kernel_size: Tuple[int, int]
  dropout_rate: float = 0.5
  negative_slope: float = 0.2
  conv_backend: str = 'xla'

  @nn.compact
  def __call__(self, x: Array, aux: Optional[Array], cond: Array, deterministic: bool,
               dropout_rng: Optional[Array] = None) -> Array:
    act = lambda v: nn.leaky_relu(v, self.negative_slope)
    conv = conv_layer(self.conv_backend)
    features = x.shape[-1]
    h = ShiftedConv(features, self.kernel_size, self.direction, self.conv_backend,
                    name='hidden_conv_0')(act(x))
    if aux is not None:
      h = h + conv(features, (1, 1), name='hidden_aux')(act(aux))
    h = nn.Dropout(self.dropout_rate)(act(h), deterministic=deterministic, rng=dropout_rng)
    h = ShiftedConv(2 * features, self.kernel_size, self.direction, self.conv_backend,
                    name='hidden_conv_1')(h)
    h = h + conv(2 * features, (1, 1), name='hidden_cond')(cond)
    a, b = jnp.split(h, 2, axis=-1)
    return x + a * nn.sigmoid(b)


class PixelCNN(nn.Module):
  """A conditional PixelCNN: Bernoulli logits [B, H, W, C] of x given a conditioning image `cond`
  [B, H, W, F] (features that do not depend on x), autoregressive in raster order.

  The logits of pixel (r, c) depend on x only through the pixels above it and left of it in its row
  (PixelCNN++'s down and down-right streams of gated resnets, with the input shifted once at the
  start). `cond` is not shifted: it enters the first layer beside x and conditions every gated layer
  through a 1x1 convolution. `features` channels per stream (0: C + 32, as Xu et al.'s PixelVAE).
  Dropout (0.5, as PixelCNN++) is active only with deterministic=False and a dropout_rng.
  Shared by PixelVAE (Xu et al.) and PixelHVAE (Tomczak & Welling).
  """
  output_shape: Tuple[int, int, int]
  num_layers: int = 3
  features: int = 0
  dropout_rate: float = 0.5
  negative_slope: float = 0.2
  conv_backend: str = 'xla'

  @nn.compact
  def __call__(self, x: Array, cond: Array, deterministic: bool = True,
               dropout_rng: Optional[Array] = None) -> Array:
    channels = self.output_shape[-1]
    features = self.features or channels + 32
    backend = self.conv_backend
    h0 = jnp.concatenate([x, cond], axis=-1)
    # The first layer must not see pixel (r, c) itself: shift its outputs once.
    u = down_shift(ShiftedConv(features, (2, 3), 'down', backend, name='hidden_input_u')(h0))
    ul = (down_shift(ShiftedConv(features, (1, 3), 'down', backend, name='hidden_input_ul_0')(h0)) +
          right_shift(ShiftedConv(features, (2, 1), 'down_right', backend,
                                  name='hidden_input_ul_1')(h0)))
    keys = (jax.random.split(dropout_rng, 2 * self.num_layers) if dropout_rng is not None
            else [None] * (2 * self.num_layers))
    for i in range(self.num_layers):
      u = GatedResnet('down', (2, 3), self.dropout_rate, self.negative_slope, backend,
                      name=f'hidden_u_{i}')(u, None, cond, deterministic, keys[2 * i])
      ul = GatedResnet('down_right', (2, 2), self.dropout_rate, self.negative_slope, backend,
                       name=f'hidden_ul_{i}')(ul, u, cond, deterministic, keys[2 * i + 1])
    return conv_layer(backend)(channels, (1, 1), name='logits')(
        nn.leaky_relu(ul, self.negative_slope))


def _images(x: Array, batch_shape, image_shape) -> Array:
  """x broadcast to batch_shape + image_shape and flattened to [-1, H, W, C]."""
  return jnp.broadcast_to(x, tuple(batch_shape) + tuple(image_shape)).reshape(
      (-1,) + tuple(image_shape))


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


# ------------------------------------------------------------------ gated layers (Tomczak & Welling)

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
    conv = lambda name: conv_layer(self.conv_backend)(
        self.features, (self.kernel_size,) * 2, (self.stride,) * 2,
        padding=((pad, pad), (pad, pad)), name=name)
    return conv('h')(x) * nn.sigmoid(conv('gate')(x))


# Tomczak & Welling's Gaussian heads: log-variance hard-tanh'ed to [-6, 2].
TOMCZAK_LOG_STD_RANGE = (-3.0, 1.0)


def tomczak_heads(latent_dim: int, name: str = 'heads') -> GaussianHeads:
  return GaussianHeads(latent_dim, TOMCZAK_LOG_STD_RANGE, he_normal, name=name)


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

  @nn.compact
  def __call__(self, z: Array) -> Array:
    h = gated_mlp(z, self.hidden_units)
    size = int(np.prod(self.output_shape))
    logits = nn.Dense(size, kernel_init=he_normal, name='logits')(h)
    return logits.reshape(z.shape[:-1] + tuple(self.output_shape))


# ------------------------------------------------------------------ vectors (Dai & Wipf's second stage)

class SecondStageEncoder(nn.Module):
  """Dai & Wipf's second-stage encoder on latent vectors u [..., d]: `num_layers` Dense[units] + ReLU,
  then the input concatenated to the last hidden layer, then the Gaussian heads (their code's
  `second stage`; Table 1: 3 layers of 1024, 2048 in the ResNet runs)."""
  latent_dim: int
  units: int = 1024
  num_layers: int = 3

  @nn.compact
  def __call__(self, x: Array) -> Tuple[Array, Array]:
    h = x
    for i in range(self.num_layers):
      h = nn.relu(nn.Dense(self.units, name=f'hidden_{i}')(h))
    return GaussianHeads(self.latent_dim, name='heads')(jnp.concatenate([x, h], axis=-1))


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
      h = nn.relu(nn.Dense(self.units, name=f'hidden_{i}')(h))
    return nn.Dense(self.output_shape[-1], name='mean')(jnp.concatenate([z, h], axis=-1))


def _second_stage(model_config, input_shape):
  if len(input_shape) != 1:
    raise ValueError(f'model.net=second_stage models latent vectors [d]; got an input shape '
                     f'{tuple(input_shape)}.')
  return {'encoder': SecondStageEncoder(model_config.latent_dim, model_config.second_stage_units,
                                        model_config.second_stage_layers),
          'decoder': SecondStageDecoder(tuple(input_shape), model_config.second_stage_units,
                                        model_config.second_stage_layers)}


# The library's one-level nets (REGISTRY.names() also lists the two-level ones of `hvae_nets` and
# those user code registered).
NETS = ('dense', 'conv', 'resnet', 'pixel', 'gated_mlp')

# Builders: (model_config, input_shape) -> the model's networks as a dict of modules: {'encoder',
# 'decoder'} for a one-level VAE (`models.VAE`), or {'encoder_z2', 'encoder_z1', 'conditional_prior',
# 'decoder', 'z1_dim'} for a two-level one (`models.HierarchicalVAE`). An encoder maps x to the
# Gaussian's (mean, log_std) [..., latent_dim]; a decoder maps z to the likelihood's parameters.
REGISTRY = registry.Registry('model.net')


def _one_level_builder(name: str):
  def build(model_config, input_shape):
    encoder, decoder = create(name, model_config.latent_dim, input_shape,
                              model_config.negative_slope, model_config.conv_backend)
    return {'encoder': encoder, 'decoder': decoder}
  return build


for _name in NETS:
  REGISTRY.register(_name, _one_level_builder(_name))
REGISTRY.register('second_stage', _second_stage)


def create(name: str, latent_dim: int, input_shape: Tuple[int, int, int],
           negative_slope: float = 0.2, conv_backend: str = 'xla') -> Tuple[nn.Module, nn.Module]:
  """Returns (encoder, decoder) for the library's net called `name` (one of NETS); the convolutional
  nets' convolutions are `conv_backend`'s (CONV_BACKENDS; the dense nets have none)."""
  input_shape = tuple(int(s) for s in input_shape)
  CONV_BACKENDS.check(conv_backend)
  if name == 'dense':
    return (DenseEncoder(latent_dim, negative_slope=negative_slope),
            DenseDecoder(input_shape, negative_slope=negative_slope))
  if name in ('conv', 'resnet'):
    check_spatial(input_shape)
    return (ConvEncoder(latent_dim, name, negative_slope, conv_backend),
            ConvDecoder(input_shape, name, negative_slope, conv_backend))
  if name == 'pixel':  # PixelVAE: the ResnetVAE encoder and a PixelCNN decoder.
    check_spatial(input_shape)
    return (ConvEncoder(latent_dim, 'resnet', negative_slope, conv_backend),
            PixelCNNDecoder(input_shape, negative_slope=negative_slope, conv_backend=conv_backend))
  if name == 'gated_mlp':  # Tomczak & Welling's VAE (L = 1).
    return GatedMLPEncoder(latent_dim), GatedMLPDecoder(input_shape)
  raise ValueError(f'Unknown net {name!r}; allowed: {", ".join(NETS)}.')
