"""The benchmarks' FLOP counter against hand counts (it sets the fractions of peak we report)."""

import jax
import jax.numpy as jnp
from jax import lax

from benchmarks import flops


def test_a_matrix_product_is_two_flops_per_multiply_add():
  a, b = jnp.ones((3, 5, 7)), jnp.ones((7, 11))
  assert flops.count(lambda a, b: a @ b, a, b) == 2 * 3 * 5 * 7 * 11


def test_a_convolution_counts_output_size_times_kernel_volume():
  x, k = jnp.ones((2, 9, 9, 3)), jnp.ones((3, 3, 3, 4))  # NHWC, HWIO
  conv = lambda x, k: lax.conv_general_dilated(x, k, (2, 2), 'SAME',
                                               dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  out_elements = 2 * 5 * 5 * 4
  assert flops.count(conv, x, k) == 2 * out_elements * 3 * 3 * 3


def test_scan_bodies_count_once_per_iteration_and_jit_and_grad_are_seen_through():
  w = jnp.ones((4, 4))

  def f(w):
    def body(h, _):
      return jnp.tanh(h @ w), None
    return jnp.sum(lax.scan(body, jnp.ones((2, 4)), None, length=6)[0])

  forward = 2 * 2 * 4 * 4
  assert flops.count(jax.jit(f), w) == 6 * forward
  # The gradient adds two products per step (w.r.t. h and w): three times the forward in all.
  assert flops.count(jax.grad(f), w) == 3 * 6 * forward


def test_onednn_convolutions_count_as_their_lax_analogues():
  import platform  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  import pytest  # pylint: disable=g-import-not-at-top
  if sys.platform != 'linux' or platform.machine() != 'x86_64':
    pytest.skip('oneDNN wheels exist for Linux x86_64 only')
  from vaeprior_jax.cpu import onednn  # pylint: disable=g-import-not-at-top
  x, k, b = jnp.ones((2, 9, 9, 3)), jnp.ones((3, 3, 3, 4)), jnp.ones((4,))
  ref = lambda x, k: jnp.sum(lax.conv_general_dilated(
      x, k, (2, 2), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC')) + b)
  ours = lambda x, k: jnp.sum(onednn.conv(x, k, b, (2, 2), 'SAME'))
  forward = 2 * (2 * 5 * 5 * 4) * 3 * 3 * 3
  assert flops.count(ours, x, k) == flops.count(ref, x, k) == forward
  # Forward, input gradient, kernel gradient: three times the forward. (lax's input gradient of a
  # strided convolution counts the multiply-adds with its dilation zeros too: more than 3x.)
  assert flops.count(jax.grad(ours, (0, 1)), x, k) == 3 * forward
