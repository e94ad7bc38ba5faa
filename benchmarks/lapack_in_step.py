r"""What a tiny log-determinant costs inside a compiled step with convolutions (benchmarks/LOG.md).

  python -m benchmarks.lapack_in_step

Times one jitted function per variant (median of 5 windows of 5 calls, milliseconds per call): six
chained 14x14x64 3x3 convolutions (batch 128, forward and kernel gradient) alone, and beside an
independent log-determinant of 20 matrices of 40 x 40 computed by
  slogdet_grad   `jnp.linalg.slogdet` and its gradient (LAPACK getrf + 2 trsm on the CPU),
  lu_only        `jnp.linalg.slogdet` without gradient (getrf only),
  gauss_jordan   `flows.log_abs_det` and its gradient (plain XLA operations on the CPU),
and the log-determinants alone. Compiled with the library's XLA options (`xla_options.jit`). Prints
one JSON line.
"""

import json

from absl import app
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import jax_workloads as jw
from vaeprior_jax.cpu import xla_options
from vaeprior_jax import flows


def _convs(x, w):
  for _ in range(6):
    x = 0.1 * jax.lax.conv_general_dilated(x, w, (1, 1), 'SAME',
                                           dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  return x.sum()


def _variants():
  conv_grad = lambda x, w: jax.grad(_convs, 1)(x, w).sum()
  log_dets = {
      'slogdet_grad': lambda k: jax.grad(lambda m: jnp.linalg.slogdet(m)[1].sum())(k).sum(),
      'lu_only': lambda k: jnp.linalg.slogdet(k)[1].sum(),
      'gauss_jordan': lambda k: jax.grad(lambda m: flows.log_abs_det(m).sum())(k).sum(),
  }
  out = {'convolutions': lambda x, w, k: conv_grad(x, w)}
  for name, fn in log_dets.items():
    out[f'convolutions+{name}'] = lambda x, w, k, fn=fn: conv_grad(x, w) + fn(k)
    out[f'{name} alone'] = lambda x, w, k, fn=fn: fn(k)
  return out


def _time(fn, *args, windows=5, calls=5):
  """Milliseconds per call: the median of `windows` windows of `calls` calls, after a warm-up one."""
  def window():
    for _ in range(calls):
      out = fn(*args)
    jax.block_until_ready(out)
  return float(np.median(jw.time_windows(window, windows))) / calls * 1e3


def main(argv):
  del argv
  x = jax.random.normal(jax.random.key(1), (128, 14, 14, 64))
  w = jax.random.normal(jax.random.key(2), (3, 3, 64, 64))
  k = jax.nn.initializers.orthogonal()(jax.random.key(0), (20, 40, 40))
  platform = jax.devices()[0].platform
  result = {name: _time(xla_options.jit(fn, platform), x, w, k) for name, fn in _variants().items()}
  print(json.dumps({'ms_per_call': result, 'jax': jax.__version__, 'platform': platform,
                    'xla_options': xla_options.compiler_options(platform)}), flush=True)


if __name__ == '__main__':
  app.run(main)
