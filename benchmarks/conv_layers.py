r"""One 3x3 convolution layer (with bias), forward and gradients, in JAX and in PyTorch.

  python -m benchmarks.conv_layers
  python -m benchmarks.conv_layers --transposed   # the decoder's upsampling layers, two ways

For the ResnetVAE's two main layer shapes at batch 128 (28x28x32 -> 32 and 14x14x64 -> 64, 'SAME'
padding), milliseconds per call (median of 7 windows of 5 calls) of the forward layer and of its
gradients w.r.t. input, kernel and bias given an output gradient: JAX (NHWC, compiled with the
library's XLA options) and, where torch is installed, PyTorch (NCHW, as the peer in
`torch_peer.py`; its gradient time is forward+backward minus forward). Prints one JSON line.

With --transposed: the ResnetVAE decoder's two 3x3, stride-2 transposed convolutions (7x7x64 ->
14x14x64 and 14x14x64 -> 28x28x32, batch 128), forward and gradients w.r.t. input and kernel, as
the library computes them (`nets.base.conv_transpose_same`: one stride-1 convolution per output phase)
and as `lax.conv_transpose` does (one convolution of the input dilated with zeros: flax's
nn.ConvTranspose), in alternating windows, after checking that both give the same values. The
per-phase form was chosen on the CPU (benchmarks/LOG.md); on an accelerator this says whether
it should be kept there.
"""

import json

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import jax_workloads as jw
from vaeprior_jax.cpu import xla_options
from vaeprior_jax import nets

_TRANSPOSED = flags.DEFINE_bool('transposed', False, 'Time the upsampling layers instead: the '
                                "library's per-phase transposed convolution against lax's.")

SHAPES = ((28, 32), (14, 64))
TRANSPOSED_SHAPES = ((7, 64, 64), (14, 64, 32))  # (input size, in channels, out channels)
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


def _transposed_times(size, in_channels, out_channels, windows=9, reps=5):
  keys = jax.random.split(jax.random.key(1), 3)
  x = jax.random.normal(keys[0], (BATCH, size, size, in_channels))
  w = jax.random.normal(keys[1], (3, 3, in_channels, out_channels)) * 0.05
  dy = jax.random.normal(keys[2], (BATCH, 2 * size, 2 * size, out_channels))
  ways = {
      'per_phase': lambda x_, w_: nets.base.conv_transpose_same(x_, w_, (2, 2)),
      'lax': lambda x_, w_: jax.lax.conv_transpose(x_, w_, (2, 2), 'SAME',
                                                    dimension_numbers=('NHWC', 'HWIO', 'NHWC')),
  }
  forwards = {k: xla_options.jit(f) for k, f in ways.items()}
  gradients = {k: xla_options.jit(lambda x_, w_, dy_, f=f: jax.vjp(f, x_, w_)[1](dy_))
               for k, f in ways.items()}
  y = {k: np.asarray(f(x, w)) for k, f in forwards.items()}
  g = {k: [np.asarray(v) for v in f(x, w, dy)] for k, f in gradients.items()}
  scale = lambda a: float(np.max(np.abs(a)))
  difference = max(
      [scale(y['per_phase'] - y['lax']) / scale(y['lax'])]
      + [scale(a - b) / scale(b) for a, b in zip(g['per_phase'], g['lax'])])
  fns = []
  for k in ways:
    fns.append(lambda k=k: [jax.block_until_ready(forwards[k](x, w)) for _ in range(reps)])
    fns.append(lambda k=k: [jax.block_until_ready(gradients[k](x, w, dy)) for _ in range(reps)])
  for fn in fns:  # Warm-up.
    fn()
  times = [1e3 * float(np.median(t)) / reps for t in jw.alternating_windows(windows, *fns)]
  return {'per_phase': {'forward_ms': times[0], 'gradients_ms': times[1]},
          'lax': {'forward_ms': times[2], 'gradients_ms': times[3]},
          'max_relative_difference': difference}


def main(argv):
  del argv
  if _TRANSPOSED.value:
    out = {'backend': jax.default_backend(), 'device_kind': jax.devices()[0].device_kind}
    for size, c_in, c_out in TRANSPOSED_SHAPES:
      out[f'{size}x{size}x{c_in}->{2 * size}x{2 * size}x{c_out}'] = _transposed_times(
          size, c_in, c_out)
    print(json.dumps(out), flush=True)
    return
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
