"""PixelCNN layers (van den Oord et al.; PixelCNN++'s shifted convolutions and gated resnets): the
autoregressive decoders of Xu et al.'s PixelVAE and Tomczak & Welling's PixelHVAE."""

from typing import Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from vaeprior_jax import config as config_lib
from vaeprior_jax.nets.base import conv_layer

Array = jax.Array

# This component's config keys and their defaults (`config.declare`).
config_lib.declare(
    'PixelCNN decoders (model.net=pixel|pixelhvae)',
    model=dict(
        pixelcnn_layers=3,  # PixelVAE / PixelHVAE's gated layers per stream
        pixelcnn_features=0,  # 0: C + 32 channels
    ),
)


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

