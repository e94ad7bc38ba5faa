"""Transposed convolutions on the CPU as one stride-1 convolution per output phase.

`nets.base.ConvTranspose` (and every backend's `transpose_same`) uses `per_phase` on the CPU only: there
XLA takes the kernel gradient of lax's input-dilated form through a slow path. Elsewhere the plain
`lax.conv_transpose` runs. tests/nets/nets_test.py checks the two against each other, values and
gradients.
"""

from typing import Tuple

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


def _transpose_phase_taps(kernel_size: int, stride: int):
  """One spatial axis of lax.conv_transpose(..., 'SAME') (transpose_kernel=False): the triples
  (phase a, tap t, offset d) such that output s*m + a receives kernel[t] * x[m + d].

  lax computes the transposed convolution as a stride-1 convolution of x dilated by s (s - 1 zeros
  between pixels), padded by pad_before (below) in front. Output o = s*m + a then meets x[j] at tap t
  when o + t - pad_before = s*j, i.e. t = pad_before - a (mod s) and j = m + (a + t - pad_before) / s.
  """
  pad_len = kernel_size + stride - 2
  pad_before = kernel_size - 1 if stride > kernel_size - 1 else -(-pad_len // 2)
  return [(a, t, (a + t - pad_before) // stride) for a in range(stride)
          for t in range(kernel_size) if (a + t - pad_before) % stride == 0]


def _phase_kernel(kernel: Array, taps_h, taps_w):
  """The stride-1 kernel of one output phase, from its (tap, offset) pairs along each axis, and the
  padding that places it: ([eh, ew, C, F], ((pad_top, pad_bottom), (pad_left, pad_right))).

  A phase's taps are every s-th tap, at consecutive offsets, so they fill the kernel: no zeros."""
  taps_h, taps_w = sorted(taps_h, key=lambda p: p[1]), sorted(taps_w, key=lambda p: p[1])
  (_, lo_h), (_, hi_h) = taps_h[0], taps_h[-1]
  (_, lo_w), (_, hi_w) = taps_w[0], taps_w[-1]
  assert hi_h - lo_h + 1 == len(taps_h) and hi_w - lo_w + 1 == len(taps_w), (taps_h, taps_w)
  rows = np.array([t for t, _ in taps_h])
  cols = np.array([t for t, _ in taps_w])
  # Output m reads x[m + lo] .. x[m + hi]: pad (or crop, for negative amounts) by -lo and hi.
  return kernel[rows[:, None], cols[None, :]], ((-lo_h, hi_h), (-lo_w, hi_w))


def per_phase(x: Array, kernel: Array, strides: Tuple[int, int], stride1_conv) -> Array:
  """lax.conv_transpose(x, kernel, strides, 'SAME') for x [N, H, W, C], kernel [kh, kw, C, F] (HWIO,
  not flipped: flax's nn.ConvTranspose), output [N, H*sh, W*sw, F], computed without dilating x.

  Each of the sh*sw output phases (o mod s) is a small stride-1 convolution of x itself with the
  taps of `kernel` that reach it (for 3x3, stride 2: 1x1, 1x2, 2x1 and 2x2 kernels, 9 taps in all);
  the phases are then interleaved (depth to space). Same function and gradients as lax's, but
  XLA:CPU takes the kernel gradient of an input-dilated convolution through a slow path; here every
  gradient is that of an ordinary convolution, and no multiply-add meets a dilation zero. (One
  convolution of all phases at once, with a shared kernel whose unused taps are zero, does more
  multiply-adds and was slower; benchmarks/LOG.md.) A phase that no tap reaches (kernel < stride)
  is zero. `stride1_conv(x, kernel, padding)` computes the phases' convolutions
  (XLA's or oneDNN's).
  """
  conv = stride1_conv
  kh, kw, in_features, features = kernel.shape
  sh, sw = strides
  if x.ndim != 4 or x.shape[-1] != in_features:
    raise ValueError(f'conv_transpose_same needs x [N, H, W, {in_features}], got {x.shape}.')
  n, h, w, _ = x.shape
  if kh == 1 and kw == 1:  # Only phase (0, 0) has a tap, at offset 0.
    y = jnp.einsum('nhwc,cf->nhwf', x, kernel[0, 0])
    return jax.lax.pad(y, jnp.zeros((), y.dtype),
                       ((0, 0, 0), (0, sh - 1, sh - 1), (0, sw - 1, sw - 1), (0, 0, 0)))
  taps_h, taps_w = _transpose_phase_taps(kh, sh), _transpose_phase_taps(kw, sw)
  dtype = jnp.result_type(x, kernel)
  rows = []
  for ah in range(sh):
    phase_h = [(t, d) for a, t, d in taps_h if a == ah]
    row = []
    for aw in range(sw):
      phase_w = [(t, d) for a, t, d in taps_w if a == aw]
      if not phase_h or not phase_w:
        row.append(jnp.zeros((n, h, w, features), dtype))
        continue
      phase_kernel, padding = _phase_kernel(kernel, phase_h, phase_w)
      row.append(conv(x, phase_kernel, padding))
    rows.append(jnp.stack(row, axis=3))  # [N, H, W, sw, F]
  y = jnp.stack(rows, axis=3)  # [N, H, W, sh, sw, F]
  return y.transpose(0, 1, 3, 2, 4, 5).reshape(n, h * sh, w * sw, features)
