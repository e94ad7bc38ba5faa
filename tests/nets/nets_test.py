"""Layers of `vaeprior_jax.nets` against independent implementations."""

import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vaeprior_jax import nets


@pytest.mark.parametrize('kernel, stride', list(itertools.product((1, 2, 3, 4), (1, 2, 3))))
def test_conv_transpose_matches_flax_in_init_values_and_gradients(kernel, stride):
  x = jax.random.normal(jax.random.key(0), (2, 5, 7, 3))
  ours = nets.base.ConvTranspose(4, (kernel, kernel), (stride, stride))
  flax_layer = nn.ConvTranspose(4, (kernel, kernel), (stride, stride), padding='SAME')
  params = flax_layer.init(jax.random.key(1), x)
  ours_params = ours.init(jax.random.key(1), x)
  assert jax.tree.structure(ours_params) == jax.tree.structure(params)
  for a, b in zip(jax.tree.leaves(ours_params), jax.tree.leaves(params)):
    np.testing.assert_array_equal(a, b)  # Same names, shapes and initial values.
  # A non-zero bias and a non-linear loss, so that every gradient entry is exercised.
  params = jax.tree.map(lambda p: p + 0.3 * jax.random.normal(jax.random.key(2), p.shape), params)
  loss = lambda layer: lambda p, x_: jnp.sum(jnp.sin(layer.apply(p, x_)))
  y, y_ref = ours.apply(params, x), flax_layer.apply(params, x)
  assert y.shape == y_ref.shape == (2, 5 * stride, 7 * stride, 4)
  np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
  grads = jax.grad(loss(ours), argnums=(0, 1))(params, x)
  grads_ref = jax.grad(loss(flax_layer), argnums=(0, 1))(params, x)
  for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_ref)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_conv_transpose_refuses_other_padding_and_shapes():
  x = jnp.zeros((1, 4, 4, 2))
  with pytest.raises(ValueError, match='VALID'):
    nets.base.ConvTranspose(3, (3, 3), (2, 2), padding='VALID').init(jax.random.key(0), x)
  with pytest.raises(ValueError, match=r'\[N, H, W, 2\]'):
    nets.base.conv_transpose_same(jnp.zeros((4, 4, 2)), jnp.zeros((3, 3, 2, 3)), (2, 2))


def test_the_per_phase_transposed_convolution_is_the_cpus_only():
  """On the CPU the layer is computed per output phase (no input dilation); lowered for a GPU or
  TPU it is lax's transposed convolution (an input-dilated convolution)."""
  from jax import export  # pylint: disable=g-import-not-at-top
  x = jnp.zeros((2, 7, 7, 3))
  layer = nets.base.ConvTranspose(4, (3, 3), (2, 2))
  params = layer.init(jax.random.key(0), x)
  dilated = {}
  for platform in ('cpu', 'cuda', 'tpu'):
    exported = export.export(jax.jit(layer.apply), platforms=[platform])(params, x)
    dilated[platform] = 'lhs_dilate = [2, 2]' in exported.mlir_module()
  assert dilated == {'cpu': False, 'cuda': True, 'tpu': True}, dilated
  np.testing.assert_allclose(
      nets.base.lax_conv_transpose_same(x + 1.0, params['params']['kernel'], (2, 2)),
      layer.apply(params, x + 1.0) - params['params']['bias'], rtol=1e-5, atol=1e-5)


def test_dense_critic_is_a_numpy_mlp_of_its_parameters():
  """The pull-back prior's dense critic: two leaky-ReLU layers of 500 and a scalar head on the
  flattened image, recomputed in NumPy from its parameters; registered as `dense`."""
  from vaeprior_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  mc = config_lib.complete_section({'negative_slope': 0.2}, 'model')
  critic = nets.DISCRIMINATORS.get('dense')(mc, (28, 28, 1))
  x = jax.random.uniform(jax.random.key(0), (3, 2, 28, 28, 1))
  variables = critic.init(jax.random.key(1), x)
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), variables['params'])
  assert sum(v.size for v in jax.tree.leaves(p)) == 784 * 500 + 500 + 500 * 500 + 500 + 500 + 1
  h = np.asarray(x, np.float64).reshape(3, 2, 784)
  for name in ('hidden_0', 'hidden_1'):
    h = h @ p[name]['kernel'] + p[name]['bias']
    h = np.where(h > 0, h, 0.2 * h)
  expected = (h @ p['out']['kernel'] + p['out']['bias'])[..., 0]
  np.testing.assert_allclose(critic.apply(variables, x), expected, rtol=1e-4, atol=1e-5)
