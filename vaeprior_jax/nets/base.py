"""What every net shares: the net registry, the convolution backends, Gaussian heads and the
residual and transposed-convolution layers that several papers' nets are built from.

A net builder, registered in `REGISTRY` under the name configs give as `model.net`, maps
(model_config, input_shape) to the model's networks as a dict of modules: {'encoder', 'decoder'} for
a one-level VAE (`models.VAE`), or {'encoder_z2', 'encoder_z1', 'conditional_prior', 'decoder',
'z1_dim'} for a two-level one (`models.HierarchicalVAE`). An encoder maps x to the Gaussian's (mean,
log_std) [..., latent_dim]; a decoder maps z to the likelihood's parameters. Modules whose names
start with `hidden` hold the kernels of the non-linear layers (what the papers' L2 regularisation
applies to, see `methods.objectives.l2_penalty`).
"""

import dataclasses
import functools
from typing import Callable, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from vaeprior_jax import config as config_lib
from vaeprior_jax.cpu import conv_transpose as cpu_conv_transpose
from vaeprior_jax import registry

Array = jax.Array

REGISTRY = registry.Registry('model.net')
# Critics on data space for a prior defined through the decoder (the pull-back prior's D): builders
# (model_config, input_shape) -> module, [B, H, W, C] -> [B].
DISCRIMINATORS = registry.Registry('model.discriminator')


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
  (so that `methods.objectives.l2_penalty` covers them); no activation after the last (VAEPP's code)."""
  for i, (features, stride, kernel) in enumerate(stack):
    h = ResidualBlock(features, stride, transpose=transpose, negative_slope=negative_slope,
                      kernel_size=kernel, name=f'hidden_{i}')(h)
  return h



def output_shape_of(image_shape, out_channels: int) -> Tuple[int, ...]:
  """The decoder's output shape for images of `image_shape` (H, W, C): (H, W, out_channels), or the
  image shape where `out_channels` is 0. A likelihood may need more channels than the image has
  (`likelihoods.output_channels`: the discretized logistic's per-pixel scales)."""
  return tuple(image_shape[:-1]) + (int(out_channels or image_shape[-1]),)


def check_not_autoregressive_channels(net: str, input_shape, out_channels: int) -> None:
  """Autoregressive decoders read x as they emit it: they emit exactly its channels."""
  if out_channels and out_channels != input_shape[-1]:
    raise ValueError(f'model.net={net} has an autoregressive decoder that emits one value per pixel '
                     f'and channel ({input_shape[-1]}); model.likelihood needs {out_channels} '
                     'channels: use a non-autoregressive net.')


def check_image_shape(shape, multiple: int = 4, net: str = '') -> None:
  """Raises a one-line ValueError unless `shape` is (H, W, C) with H and W divisible by `multiple`
  (a net's stride-2 stages: 4 for two), naming `net` (a `model.net`) when given."""
  if len(shape) != 3 or shape[0] % multiple or shape[1] % multiple:
    who = f'model.net={net} needs' if net else 'Convolutional nets need'
    raise ValueError(f'{who} an input shape (H, W, C) with H and W divisible by {multiple}, got '
                     f'{tuple(shape)}.')


def check_spatial(shape: Tuple[int, int, int]):
  """`check_image_shape` for two stride-2 stages."""
  check_image_shape(shape, 4)



def build(name: str, input_shape, **model_settings):
  """The networks of the net `name` (a name of REGISTRY) for inputs of `input_shape`, as its builder
  returns them, from `model_settings` (keys of `config.model`, e.g. latent_dim=40,
  conv_backend='onednn'; the others at their defaults). For building nets outside a model:
  `models.create` builds them from a config."""
  model_config = config_lib.complete_section(dict(model_settings, net=name), 'model')
  CONV_BACKENDS.check(model_config.conv_backend)
  return dict(REGISTRY.get(name)(model_config, tuple(int(s) for s in input_shape)))
