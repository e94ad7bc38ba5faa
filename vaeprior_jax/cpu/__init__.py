"""What exists only to make XLA:CPU faster. Nothing here changes a result: each piece is checked
against the plain computation in the tests, and none applies on GPUs or TPUs.

  xla_options     compiler options for the library's compiled functions on the CPU (XLA's own
                  kernels instead of YNNPACK fusions), and the huge-page advice for the process.
  conv_transpose  transposed convolutions as one stride-1 convolution per output phase (XLA:CPU
                  takes the kernel gradient of the input-dilated form through a slow path).
  linalg          log|det| by Gauss-Jordan elimination in plain XLA operations (jaxlib's LAPACK calls
                  slowed whole compiled steps).
  onednn          oneDNN's convolutions as XLA FFI custom calls (opt-in: model.conv_backend=onednn;
                  Linux x86_64, needs the `onednn` extra and a C++ compiler).

The core enters through two seams: `vaeprior_jax.compiled.jit` (compiler options per platform) and
the convolution backends of `vaeprior_jax.nets.CONV_BACKENDS` (this package registers 'onednn'
there; 'xla' takes the per-phase transposed convolution on the CPU only, through
`lax.platform_dependent`). `flows.log_abs_det` picks `linalg` on the CPU the same way. docs/
cpu_performance.md has the decisions, benchmarks/LOG.md the measurements.
"""

from vaeprior_jax.cpu import conv_transpose
from vaeprior_jax.cpu import linalg
from vaeprior_jax.cpu import xla_options

__all__ = ['conv_transpose', 'linalg', 'xla_options']
