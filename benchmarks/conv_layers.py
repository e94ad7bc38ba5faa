r"""One 3x3 convolution layer (with bias), forward and gradients, in JAX and in PyTorch.

  python -m benchmarks.conv_layers

For the ResnetVAE's two main layer shapes at batch 128 (28x28x32 -> 32 and 14x14x64 -> 64, 'SAME'
padding), milliseconds per call (median of 7 windows of 5 calls) of the forward layer and of its
gradients w.r.t. input, kernel and bias given an output gradient: JAX (NHWC, compiled with the
library's XLA options) and, where torch is installed, PyTorch (NCHW, as the peer in
`torch_peer.py`; its gradient time is forward+backward minus forward). Prints one JSON line.
"""

import json

from absl import app
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import jax_workloads as jw
from vaeprior_jax import xla_options

SHAPES = ((28, 32), (14, 64))
BATCH = 128


def _ms(fn, reps=5, windows=7):
  """Milliseconds per call of fn: the median over `windows` timed windows of `reps` calls."""
  times = jw.time_windows(lambda: [fn() for _ in range(reps)], windows)
  return 1e3 * float(np.median(times)) / reps


def _layer(x, w, b):
  return jax.lax.conv_general_dilated(x, w, (1, 1), 'SAME',
                                      dimension_numbers=('NHWC', 'HWIO', 'NHWC')) + b


def _jax_times(size, channels):
  keys = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(keys[0], (BATCH, size, size, channels))
  w = jax.random.normal(keys[1], (3, 3, channels, channels))
  b = jnp.zeros(channels)
  dy = jax.random.normal(keys[2], (BATCH, size, size, channels))
  forward = xla_options.jit(_layer)
  gradients = xla_options.jit(lambda x_, w_, b_, dy_: jax.vjp(_layer, x_, w_, b_)[1](dy_))
  return {'forward_ms': _ms(lambda: jax.block_until_ready(forward(x, w, b))),
          'gradients_ms': _ms(lambda: jax.block_until_ready(gradients(x, w, b, dy)))}


def _torch_times(torch, size, channels):
  f = torch.nn.functional
  x = torch.randn(BATCH, channels, size, size, requires_grad=True)
  w = torch.randn(channels, channels, 3, 3, requires_grad=True)
  b = torch.zeros(channels, requires_grad=True)
  dy = torch.randn(BATCH, channels, size, size)

  def forward():
    with torch.no_grad():
      f.conv2d(x, w, b, padding=1)

  def forward_backward():
    torch.autograd.grad(f.conv2d(x, w, b, padding=1), (x, w, b), dy)

  fwd = _ms(forward)
  return {'forward_ms': fwd, 'gradients_ms': _ms(forward_backward) - fwd}


def main(argv):
  del argv
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    torch = None
  out = {}
  for size, channels in SHAPES:
    name = f'{size}x{size}x{channels}'
    out[name] = {'jax': _jax_times(size, channels)}
    if torch is not None:
      out[name]['torch'] = _torch_times(torch, size, channels)
  print(json.dumps(out), flush=True)


if __name__ == '__main__':
  app.run(main)
