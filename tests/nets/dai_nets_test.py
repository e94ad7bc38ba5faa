"""Dai & Wipf's first-stage nets: spectral normalisation and batch norm in training and inference
(checked against their definitions) and the shapes of Table 1's three image sizes. Their statistics
through training, checkpoints, resumption and evaluation: two_stage_test."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vaeprior_jax import config as config_lib
from vaeprior_jax import models
from vaeprior_jax.nets import dai_nets


def _model_config(net, **kw):
  mc = config_lib.defaults().model
  mc.net, mc.likelihood, mc.mean_activation, mc.latent_dim = net, 'gaussian', 'sigmoid', 8
  mc.dai_resnet_num_scales = 3
  for k, v in kw.items():
    mc[k] = v
  return mc


@pytest.mark.parametrize('net', ['infogan', 'dai_resnet'])
@pytest.mark.parametrize('shape', [(28, 28, 1), (32, 32, 3), (64, 64, 3)])
def test_first_stage_nets_map_each_table_1_image_size_to_itself(net, shape):
  model = models.create(_model_config(net), shape)
  x = jnp.zeros((2,) + shape)
  out = jax.eval_shape(lambda: model.init(jax.random.key(0), x, jax.random.key(1)))
  assert set(out) == {'params', 'batch_stats'}
  recon = jax.eval_shape(lambda v: model.apply(v, x, jax.random.key(2), method=model.reconstruct),
                         out)
  assert recon.shape == (2,) + shape


def test_the_resnet_decoder_starts_at_2x2_for_powers_of_two_and_at_7x7_for_28():
  assert dai_nets.resnet_decoder_scales(64, 16) == ((2, 4, 8, 16, 32, 64),
                                                    (512, 256, 128, 64, 32, 16))
  assert dai_nets.resnet_decoder_scales(64, 32) == ((2, 4, 8, 16, 32, 64),
                                                    (1024, 512, 256, 128, 64, 32))
  assert dai_nets.resnet_decoder_scales(28, 32) == ((7, 14, 28), (128, 64, 32))


def _infogan_encoder(x):
  encoder = dai_nets.InfoGANEncoder(latent_dim=3)
  return encoder, encoder.init(jax.random.key(0), x)


def test_spectral_norm_converges_to_the_largest_singular_value_and_is_fixed_in_inference():
  x = jax.random.uniform(jax.random.key(1), (4, 8, 8, 1))
  encoder, variables = _infogan_encoder(x)
  step = lambda _, v: dict(v, **encoder.apply(v, x, train=True, mutable=['batch_stats'])[1])
  # One power iteration per training call; random kernels' top singular values are close together.
  variables = jax.jit(lambda v: jax.lax.fori_loop(0, 1000, step, v))(variables)
  stats = variables['batch_stats']
  for layer in ('hidden_0', 'hidden_1', 'hidden_2', 'heads'):
    kernel = np.asarray(variables['params'][layer]['kernel'], np.float64)
    top = np.linalg.svd(kernel.reshape(-1, kernel.shape[-1]), compute_uv=False)[0]
    np.testing.assert_allclose(stats[f'sn_{layer}'][f'{layer}/kernel/sigma'], top, rtol=1e-3)
  # Inference neither needs nor changes any variable: apply without `mutable` succeeds, twice equal.
  a = encoder.apply(variables, x)
  b = encoder.apply(variables, x)
  np.testing.assert_array_equal(a[0], b[0])


def test_batch_norm_uses_batch_statistics_in_training_and_running_averages_in_inference():
  x = jax.random.uniform(jax.random.key(1), (16, 8, 8, 1))
  encoder, variables = _infogan_encoder(x)
  capture = lambda m, _: m.name in ('sn_hidden_1', 'bn_1')
  (_, inter), = [encoder.apply(variables, x, train=True, mutable=['batch_stats', 'intermediates'],
                               capture_intermediates=capture)]
  bn_in = np.asarray(inter['intermediates']['sn_hidden_1']['__call__'][0], np.float64)
  bn_out = np.asarray(inter['intermediates']['bn_1']['__call__'][0], np.float64)
  mean, var = bn_in.mean(axis=(0, 1, 2)), bn_in.var(axis=(0, 1, 2))  # Biased, as the code.
  np.testing.assert_allclose(bn_out, (bn_in - mean) / np.sqrt(var + 1e-5), rtol=1e-3, atol=1e-4)
  stats = inter['batch_stats']['bn_1']  # Zero-debiased: after one step, the batch's statistics.
  np.testing.assert_allclose(stats['mean'], mean, rtol=1e-3, atol=1e-6)
  np.testing.assert_allclose(stats['var'], var, rtol=1e-3)
  # Inference: the running averages, whatever the batch.
  variables = dict(variables, batch_stats=inter['batch_stats'])
  _, inter = encoder.apply(variables, x, mutable=['intermediates'], capture_intermediates=capture)
  bn_in = np.asarray(inter['intermediates']['sn_hidden_1']['__call__'][0], np.float64)
  bn_out = np.asarray(inter['intermediates']['bn_1']['__call__'][0], np.float64)
  expected = (bn_in - np.asarray(stats['mean'])) / np.sqrt(np.asarray(stats['var']) + 1e-5)
  np.testing.assert_allclose(bn_out, expected, rtol=1e-3, atol=1e-4)


def test_the_encoder_std_is_softplus_plus_1e_6():
  x = jax.random.uniform(jax.random.key(1), (4, 8, 8, 1))
  encoder, variables = _infogan_encoder(x)
  _, inter = encoder.apply(variables, x, mutable=['intermediates'],
                           capture_intermediates=lambda m, _: m.name == 'sn_heads')
  out = np.asarray(inter['intermediates']['sn_heads']['__call__'][0], np.float64)
  mean, log_std = encoder.apply(variables, x)
  np.testing.assert_allclose(mean, out[:, :3], rtol=1e-6)
  np.testing.assert_allclose(np.exp(log_std), 1e-6 + np.logaddexp(0, out[:, 3:]), rtol=1e-5)


def test_batch_norm_averages_are_tensorflows_zero_debiased_moving_averages():
  """Against TF1's assign_moving_average (the authors' batch_norm), run in graph mode as they ran it."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tensorflow.python.training import moving_averages  # pylint: disable=g-import-not-at-top
  batches = np.random.default_rng(0).normal(2.0, 3.0, (5, 16, 4)).astype(np.float32)
  bn = dai_nets.BatchNorm()
  variables = bn.init(jax.random.key(0), batches[0])
  for batch in batches:
    _, updates = bn.apply(variables, batch, mutable=['batch_stats'])
    variables = dict(variables, **updates)
  graph = tf.Graph()
  with graph.as_default():
    x = tf.compat.v1.placeholder(tf.float32, [16, 4])
    mean, var = tf.nn.moments(x, [0])
    moving = [tf.compat.v1.get_variable(name, [4], initializer=init, trainable=False)
              for name, init in (('mean', tf.compat.v1.zeros_initializer()),
                                 ('var', tf.compat.v1.ones_initializer()))]
    ops = [moving_averages.assign_moving_average(moving[0], mean, 0.999),
           moving_averages.assign_moving_average(moving[1], var, 0.999)]
    with tf.compat.v1.Session() as session:
      session.run(tf.compat.v1.global_variables_initializer())
      for batch in batches:
        expected = session.run(ops, {x: batch})
  stats = variables['batch_stats']
  np.testing.assert_allclose(stats['mean'], expected[0], rtol=1e-4)
  np.testing.assert_allclose(stats['var'], expected[1], rtol=1e-4)
  assert not np.allclose(stats['mean'], 0.001 * sum(  # Not flax's plain moving average from 0.
      0.999 ** (4 - i) * batches[i].mean(0) for i in range(5)), rtol=0.1)


def test_second_stage_dense_layers_start_glorot_uniform():
  """tf.layers.dense's default, which Dai & Wipf's code uses: kernels uniform on +-sqrt(6 / (fan_in +
  fan_out)), so their variance is 2 / (fan_in + fan_out); biases zero."""
  encoder = dai_nets.SecondStageEncoder(latent_dim=64, units=1024, num_layers=3)
  decoder = dai_nets.SecondStageDecoder((64,), units=1024, num_layers=3)
  u = jnp.zeros((2, 64))
  for net in (encoder, decoder):
    params = net.init(jax.random.key(0), u)['params']
    kernels = {'/'.join(k.key for k in path[:-1]): leaf for path, leaf in
               jax.tree_util.tree_flatten_with_path(params)[0] if path[-1].key == 'kernel'}
    assert len(kernels) == (5 if net is encoder else 4)
    for name, kernel in kernels.items():
      fan_in, fan_out = kernel.shape
      limit = np.sqrt(6.0 / (fan_in + fan_out))
      assert float(jnp.max(jnp.abs(kernel))) <= limit, name
      np.testing.assert_allclose(float(jnp.var(kernel)), 2.0 / (fan_in + fan_out), rtol=0.1,
                                 err_msg=name)
