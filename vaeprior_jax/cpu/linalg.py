"""log|det a| on the CPU without LAPACK: Gauss-Jordan elimination in plain XLA operations.

Inside a compiled train step, jaxlib's LAPACK calls (getrf, and two trsm in the gradient) slow the
whole step down far beyond their own cost (benchmarks/LOG.md has the profiles). `flows.log_abs_det` uses this on the CPU and `jnp.linalg.slogdet` elsewhere.
"""

from typing import Tuple

import jax
from jax import lax
import jax.numpy as jnp

Array = jax.Array


def gauss_jordan_inverse(a: Array) -> Tuple[Array, Array]:
  """(a^{-1}, log|det a|) of [..., d, d] matrices by Gauss-Jordan elimination with partial pivoting.

  Plain XLA operations: a loop of d steps, each a few fused [..., d, 2d] elementwise operations. Its
  rounding error is that of LAPACK's LU-based inverse (tests/flows_test.py). A singular matrix gives
  log|det| = -inf, as `jnp.linalg.slogdet` does.
  """
  if a.ndim < 2 or a.shape[-2] != a.shape[-1]:
    raise ValueError(f'gauss_jordan_inverse expects square matrices [..., d, d], got {a.shape}.')
  d = a.shape[-1]
  batch = a.shape[:-2]
  rows = jnp.arange(d)
  augmented = jnp.concatenate([a, jnp.broadcast_to(jnp.eye(d, dtype=a.dtype), a.shape)], axis=-1)

  def eliminate(j, carry):
    m, log_det = carry
    column = lax.dynamic_index_in_dim(m, j, axis=-1, keepdims=False)  # [..., d]
    p = jnp.argmax(jnp.where(rows >= j, jnp.abs(column), -1.0), axis=-1)  # pivot row, >= j
    row_p = jnp.take_along_axis(m, p[..., None, None], axis=-2)  # [..., 1, 2d]
    row_j = lax.dynamic_index_in_dim(m, j, axis=-2, keepdims=True)
    pivot = lax.dynamic_index_in_dim(row_p, j, axis=-1, keepdims=True)  # [..., 1, 1]
    m = jnp.where((rows == p[..., None])[..., None], row_j, m)  # row p <- row j (the swap)
    row = row_p / pivot  # the new row j
    is_j = (rows == j)[:, None]
    factors = jnp.where(is_j, 0.0, lax.dynamic_index_in_dim(m, j, axis=-1, keepdims=True))
    m = jnp.where(is_j, row, m - factors * row)
    # A zero pivot (singular a) sets -inf for good; later pivots of the then non-finite rows do not.
    log_det = jnp.where(jnp.isneginf(log_det), log_det, log_det + jnp.log(jnp.abs(pivot[..., 0, 0])))
    return m, log_det

  augmented, log_det = lax.fori_loop(0, d, eliminate, (augmented, jnp.zeros(batch, a.dtype)))
  return augmented[..., d:], log_det


@jax.custom_jvp
def log_abs_det_gauss_jordan(a: Array) -> Array:
  return gauss_jordan_inverse(a)[1]


@log_abs_det_gauss_jordan.defjvp
def log_abs_det_gauss_jordan_jvp(primals, tangents):
  (a,), (da,) = primals, tangents
  inverse, log_det = gauss_jordan_inverse(a)
  # d log|det a| = tr(a^{-1} da): linear in da, so the gradient (its transpose) is g a^{-T}, from the
  # same inverse, with no second elimination.
  return log_det, jnp.sum(jnp.swapaxes(inverse, -1, -2) * da, axis=(-2, -1))
