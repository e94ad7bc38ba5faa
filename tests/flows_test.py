"""Property tests of the flows (RealNVP and its layers; planar layers): inversion, log-determinants,
ActNorm's init."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vaeprior_jax import config as config_lib
from vaeprior_jax import flows


def _perturbed(variables, scale=0.15, seed=7):
  """Moves every parameter off its (near-identity) initial value so the tests see a generic flow."""
  leaves, treedef = jax.tree.flatten(variables)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  return jax.tree.unflatten(
      treedef, [p + scale * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])


LAYERS = {
    'actnorm': flows.ActNorm,
    'invertible_dense': flows.InvertibleDense,
    'coupling': lambda: flows.AffineCoupling(hidden_units=8),
    'block': lambda: flows.RealNVPBlock(hidden_units=8),
    'realnvp': lambda: flows.RealNVP(num_blocks=3, hidden_units=8),
}


def _layer_and_vars(name, dim=5):
  layer = LAYERS[name]()
  z = 2.0 * jax.random.normal(jax.random.key(0), (32, dim)) + 1.0
  variables = _perturbed(layer.init(jax.random.key(1), z, method=layer.forward_and_log_det))
  return layer, variables, z


@pytest.mark.parametrize('name', sorted(LAYERS))
@pytest.mark.parametrize('dim', [2, 5])
def test_round_trip_and_opposite_log_dets(name, dim):
  layer, variables, z = _layer_and_vars(name, dim)
  w, ld_fwd = layer.apply(variables, z, method=layer.forward_and_log_det)
  z_back, ld_inv = layer.apply(variables, w, method=layer.inverse_and_log_det)
  assert ld_fwd.shape == (32,)
  np.testing.assert_allclose(z_back, z, atol=1e-4)
  np.testing.assert_allclose(ld_inv, -ld_fwd, atol=1e-4)
  assert not np.allclose(w, z, atol=1e-2)  # The perturbed layer is not the identity.


@pytest.mark.parametrize('name', sorted(LAYERS))
def test_log_det_matches_jacobian(name):
  layer, variables, z = _layer_and_vars(name)
  fwd = lambda x: layer.apply(variables, x[None], method=layer.forward_and_log_det)[0][0]
  jacobians = jax.vmap(jax.jacfwd(fwd))(z[:6])
  expected = np.linalg.slogdet(np.asarray(jacobians, np.float64))[1]
  _, log_det = layer.apply(variables, z[:6], method=layer.forward_and_log_det)
  np.testing.assert_allclose(log_det, expected, rtol=1e-4, atol=1e-4)
  inv = lambda x: layer.apply(variables, x[None], method=layer.inverse_and_log_det)[0][0]
  w, _ = layer.apply(variables, z[:6], method=layer.forward_and_log_det)
  expected_inv = np.linalg.slogdet(np.asarray(jax.vmap(jax.jacfwd(inv))(w), np.float64))[1]
  _, log_det_inv = layer.apply(variables, w, method=layer.inverse_and_log_det)
  np.testing.assert_allclose(log_det_inv, expected_inv, rtol=1e-4, atol=1e-4)


def test_actnorm_data_dependent_init_normalises_the_init_batch():
  layer = flows.ActNorm()
  z = jax.random.normal(jax.random.key(0), (256, 7)) * jnp.arange(1.0, 8.0) - 3.0
  variables = layer.init(jax.random.key(1), z, method=layer.forward_and_log_det)
  w, _ = layer.apply(variables, z, method=layer.forward_and_log_det)
  np.testing.assert_allclose(jnp.mean(w, 0), 0.0, atol=1e-5)
  np.testing.assert_allclose(jnp.std(w, 0), 1.0, atol=1e-4)


def test_realnvp_init_normalises_each_block_output():
  """ActNorm closes every block, so after init the flow's output is standardised on the init batch."""
  flow = flows.RealNVP(num_blocks=4, hidden_units=8)
  z = jax.random.normal(jax.random.key(0), (128, 6)) * 5.0 + 2.0
  variables = flow.init(jax.random.key(1), z, method=flow.forward_and_log_det)
  assert variables['params']['blocks']['coupling']['hidden']['kernel'].shape == (4, 3, 8)
  w, _ = flow.apply(variables, z, method=flow.forward_and_log_det)
  np.testing.assert_allclose(jnp.mean(w, 0), 0.0, atol=1e-4)
  np.testing.assert_allclose(jnp.std(w, 0), 1.0, atol=1e-3)


def test_blocks_have_distinct_parameters():
  flow = flows.RealNVP(num_blocks=3, hidden_units=8)
  z = jax.random.normal(jax.random.key(0), (16, 4))
  kernel = flow.init(jax.random.key(1), z, method=flow.forward_and_log_det)[
      'params']['blocks']['invertible_dense']['kernel']
  assert not np.allclose(kernel[0], kernel[1])


def test_jit_and_no_jit_agree():
  flow = flows.RealNVP(num_blocks=2, hidden_units=8)
  z = jax.random.normal(jax.random.key(0), (8, 4))
  variables = _perturbed(flow.init(jax.random.key(1), z, method=flow.forward_and_log_det))
  fn = lambda v, x: flow.apply(v, x, method=flow.forward_and_log_det)
  w, ld = jax.jit(fn)(variables, z)
  with jax.disable_jit():
    w_ref, ld_ref = fn(variables, z)
  np.testing.assert_allclose(w, w_ref, atol=1e-5)
  np.testing.assert_allclose(ld, ld_ref, atol=1e-5)


def test_rejects_one_dimensional_inputs_and_zero_blocks():
  with pytest.raises(ValueError, match='at least 2 dimensions'):
    flows.RealNVP(2).init(jax.random.key(0), jnp.ones((3, 1)), method='forward_and_log_det')
  with pytest.raises(ValueError, match='num_blocks >= 1'):
    flows.RealNVP(0).init(jax.random.key(0), jnp.ones((3, 2)), method='forward_and_log_det')


def test_an_unrolled_flow_computes_the_same_function_with_the_same_parameters():
  z = jax.random.normal(jax.random.key(0), (8, 6))
  looped, unrolled = flows.RealNVP(4, hidden_units=8), flows.RealNVP(4, hidden_units=8, unroll=4)
  variables = _perturbed(looped.init(jax.random.key(1), z, method=looped.forward_and_log_det))
  for method in ('forward_and_log_det', 'inverse_and_log_det'):
    out_a = jax.jit(lambda v, x: looped.apply(v, x, method=method))(variables, z)
    out_b = jax.jit(lambda v, x: unrolled.apply(v, x, method=method))(variables, z)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5), out_a, out_b)


def _relative_inverse_error(inverse, a64):
  truth = np.linalg.inv(a64)
  return np.linalg.norm(np.asarray(inverse, np.float64) - truth, axis=(-2, -1)) / np.linalg.norm(
      truth, axis=(-2, -1))


@pytest.mark.optimized  # The accuracy of the compiled code users run (FMA contraction included).
def test_gauss_jordan_inverse_is_as_accurate_as_lapack_against_float64():
  rng = np.random.default_rng(0)
  a = rng.normal(size=(20, 40, 40)).astype(np.float32)  # condition numbers up to ~1e4
  a64 = a.astype(np.float64)
  inverse, log_det = jax.jit(flows.gauss_jordan_inverse)(a)
  error = _relative_inverse_error(inverse, a64)
  # Within float32's forward-error bound (relative error <~ eps * cond; measured ~0.17 eps * cond)...
  np.testing.assert_array_less(error, np.finfo(np.float32).eps * np.linalg.cond(a64))
  # ...and, over the batch, no worse than LAPACK's own float32 inverse (measured 1.02x).
  assert error.max() <= 2 * _relative_inverse_error(jnp.linalg.inv(a), a64).max()
  np.testing.assert_allclose(log_det, np.linalg.slogdet(a64)[1], atol=1e-3)


@pytest.mark.parametrize('a', [
    [[0., 1., 0.], [0., 0., 2.], [3., 0., 0.]],  # zero diagonal: needs row swaps
    [[1e-7, 1., 0.], [1., 1., 0.], [0., 2., 5.]],  # a tiny leading pivot: wrong without pivoting
    [[2., 0., 0.], [0., -0.5, 0.], [0., 0., 4.]],  # negative entry: the log of the absolute value
])
def test_gauss_jordan_inverse_pivots(a):
  a = np.asarray(a, np.float32)
  inverse, log_det = flows.gauss_jordan_inverse(a)
  np.testing.assert_allclose(inverse, np.linalg.inv(a.astype(np.float64)), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(log_det, np.linalg.slogdet(a.astype(np.float64))[1], atol=1e-5)


def test_log_abs_det_gradient_is_the_inverse_transpose():
  a = np.random.default_rng(1).normal(size=(3, 6, 6)).astype(np.float32)
  value, grad = jax.jit(jax.value_and_grad(lambda m: jnp.sum(flows.log_abs_det(m) * jnp.arange(
      1.0, 4.0))))(a)
  a64 = a.astype(np.float64)
  np.testing.assert_allclose(value, np.sum(np.linalg.slogdet(a64)[1] * np.arange(1, 4)), rtol=1e-5)
  expected = np.arange(1, 4)[:, None, None] * np.swapaxes(np.linalg.inv(a64), -1, -2)
  np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-5)
  # Under vmap (the batch axis mapped instead of broadcast), the same values.
  per_matrix = jax.vmap(jax.grad(flows.log_abs_det))(a)
  np.testing.assert_allclose(per_matrix, np.swapaxes(np.linalg.inv(a64), -1, -2), rtol=1e-4,
                             atol=1e-5)


def test_log_abs_det_forward_mode_derivative():
  a = np.random.default_rng(2).normal(size=(5, 5)).astype(np.float32)
  direction = np.random.default_rng(3).normal(size=(5, 5)).astype(np.float32)
  _, tangent = jax.jvp(flows.log_abs_det, (jnp.asarray(a),), (jnp.asarray(direction),))
  a64 = a.astype(np.float64)
  np.testing.assert_allclose(tangent, np.trace(np.linalg.solve(a64, direction)), rtol=1e-4)
  np.testing.assert_allclose(jax.jacfwd(flows.log_abs_det)(a), np.linalg.inv(a64).T, rtol=1e-4,
                             atol=1e-5)


def test_log_abs_det_of_singular_matrices_and_bad_shapes():
  singular = np.array([[1., 2.], [2., 4.]], np.float32)
  assert np.isneginf(flows.log_abs_det(singular))
  assert np.isneginf(flows.log_abs_det(np.zeros((3, 3), np.float32)))
  with pytest.raises(ValueError, match=r'square matrices \[..., d, d\], got \(2, 3\)'):
    flows.gauss_jordan_inverse(jnp.ones((2, 3)))
  with pytest.raises(ValueError, match=r'got \(3,\)'):
    flows.gauss_jordan_inverse(jnp.ones(3))


def test_log_abs_det_uses_the_solvers_off_the_cpu():
  """The Gauss-Jordan loop is for the CPU only; lowered for a GPU or a TPU, the same function (and
  its gradient) is the solver's LU, as before."""
  fn = jax.jit(jax.value_and_grad(lambda m: flows.log_abs_det(m).sum()))
  a = jnp.ones((2, 4, 4))
  texts = {p: jax.export.export(fn, platforms=[p])(a).mlir_module() for p in ('cpu', 'cuda', 'tpu')}
  assert 'stablehlo.while' in texts['cpu'] and 'custom_call' not in texts['cpu']
  assert 'cusolver_getrf' in texts['cuda'] and 'stablehlo.while' not in texts['cuda']
  assert 'LuDecomposition' in texts['tpu']


def test_planar_flow_log_det_matches_the_numerical_jacobian_and_stays_invertible():
  """log|det| of the planar layers against the autodiff Jacobian's slogdet (float64 NumPy), with u
  set against v, where the unconstrained layer would fold space: the constrained one keeps every
  layer's 1 + u_hat . psi > 0 (det > 0 everywhere along the path)."""
  d, layers = 5, 4
  flow = flows.PlanarFlow(layers)
  w = jax.random.normal(jax.random.key(0), (16, d)) * 2.0
  params = flow.init(jax.random.key(1), w, method='forward_and_log_det')['params']
  v = jax.random.normal(jax.random.key(2), (layers, d))
  params = {'v': v, 'u': -3.0 * v, 'b': jnp.linspace(-1.0, 1.0, layers)}  # v . u = -3 |v|^2 < -1
  z, log_det = flow.apply({'params': params}, w, method='forward_and_log_det')
  jac = jax.vmap(jax.jacfwd(lambda x: flow.apply({'params': params}, x,
                                                method='forward_and_log_det')[0]))(w)
  sign, expected = np.linalg.slogdet(np.asarray(jac, np.float64))
  np.testing.assert_allclose(log_det, expected, rtol=1e-4, atol=1e-4)
  assert np.all(sign > 0)
  assert z.shape == w.shape and np.all(np.isfinite(np.asarray(z)))
  # Without the constraint (u_hat = u) some points would have a negative Jacobian determinant:
  v0, u0, b0 = (np.asarray(a, np.float64) for a in (params['v'][0], params['u'][0], params['b'][0]))
  psi = (1 - np.tanh(np.asarray(w, np.float64) @ v0 + b0) ** 2)[:, None] * v0
  assert np.any(1 + psi @ u0 < 0)


def test_planar_posterior_density_over_a_truncated_base():
  """q(z|x) = q0(w|x) / |det df/dw|: the log-density returned equals the base's (truncated normal)
  minus the flow's log-det, samples are finite, and the registry builds it from a config."""
  from vaeprior_jax import posteriors  # pylint: disable=g-import-not-at-top
  post = posteriors.PlanarPosterior(3, truncation=2.0)
  mean, log_std = jnp.array([[0.5, -1.0, 0.0]]), jnp.array([[-0.3, 0.2, 0.0]])
  variables = post.init(jax.random.key(0), mean, log_std, jax.random.key(1),
                        method='sample_and_log_prob')
  z, log_q = post.apply(variables, mean, log_std, jax.random.key(1), method='sample_and_log_prob')
  base = posteriors.TruncatedGaussianPosterior(2.0)
  w, log_q0 = base.sample_and_log_prob(mean, log_std, jax.random.key(1))
  z_again, log_det = flows.PlanarFlow(3).apply({'params': variables['params']['flow']}, w,
                                               method='forward_and_log_det')
  np.testing.assert_allclose(z, z_again, rtol=1e-6)
  np.testing.assert_allclose(log_q, log_q0 - log_det, rtol=1e-6)
  assert np.all(np.abs(np.asarray(w - mean)) <= 2.0 * np.exp(np.asarray(log_std)) + 1e-5)
  mc = config_lib.defaults().model
  mc.update(posterior='planar', planar_layers=7)
  built = posteriors.from_config(mc)
  assert isinstance(built, posteriors.PlanarPosterior) and built.num_layers == 7
  mc.planar_layers = 0
  with pytest.raises(ValueError, match='model.planar_layers must be >= 1'):
    posteriors.from_config(mc)
