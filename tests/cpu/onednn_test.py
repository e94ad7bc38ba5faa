"""The oneDNN convolution backend (model.conv_backend='onednn'): every result against XLA's.

On Linux x86_64 these tests run (the dev extra installs oneDNN's wheels; the first use compiles the
custom calls with g++); elsewhere oneDNN's wheels do not exist and the module is skipped.
"""

import os
import platform
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests import helpers
from vaeprior_jax.cpu import onednn
from vaeprior_jax import data
from vaeprior_jax import models
from vaeprior_jax import nets
from vaeprior_jax import sharding
from vaeprior_jax.train import trainer

pytestmark = pytest.mark.skipif(
    sys.platform != 'linux' or platform.machine() != 'x86_64',
    reason='oneDNN wheels exist for Linux x86_64 only')

DN = ('NHWC', 'HWIO', 'NHWC')


def lax_conv(x, kernel, bias, strides, padding):
  """The reference: lax's convolution over x [..., H, W, C] (leading axes flattened) + bias."""
  flat = x.reshape((-1,) + x.shape[-3:])
  y = jax.lax.conv_general_dilated(flat, kernel, strides, padding, dimension_numbers=DN) + bias
  return y.reshape(x.shape[:-3] + y.shape[1:])


def assert_close(actual, expected, rtol=2e-5):
  """Close relative to the largest magnitude (float32 sums of up to ~600 terms)."""
  for a, b in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape
    scale = max(float(np.max(np.abs(b))), 1e-6)
    np.testing.assert_allclose(a, b, rtol=0, atol=rtol * scale)


# (leading batch shape, H, W, C, kernel, F, strides, padding): the geometries the nets use (3x3 and
# 1x1 at strides 1 and 2, 7x7 and 5x5 of the gated encoders, PixelCNN's VALID 2x3), no batch axis,
# two batch axes, explicit padding and negative (cropping) padding.
GEOMETRIES = [
    ((4,), 28, 28, 8, 3, 16, (1, 1), 'SAME'),
    ((4,), 28, 28, 8, 3, 16, (2, 2), 'SAME'),
    ((4,), 14, 14, 8, 1, 6, (2, 2), 'SAME'),
    ((3,), 12, 12, 1, 7, 4, (1, 1), ((3, 3), (3, 3))),
    ((3,), 12, 12, 4, 5, 4, (1, 1), ((2, 2), (2, 2))),
    ((3,), 9, 10, 5, (2, 3), 7, (1, 1), 'VALID'),
    ((2, 3), 8, 8, 3, 3, 5, (1, 2), 'SAME'),
    ((), 7, 7, 3, 3, 2, (1, 1), 'SAME'),
    ((4,), 9, 9, 3, 3, 5, (2, 1), ((1, -1), (-1, 2))),
]


@pytest.mark.parametrize('lead, h, w, c, k, f, strides, padding', GEOMETRIES)
def test_conv_values_and_gradients_match_lax(lead, h, w, c, k, f, strides, padding):
  kh, kw = (k, k) if isinstance(k, int) else k
  keys = jax.random.split(jax.random.key(h * 7 + c), 4)
  x = jax.random.normal(keys[0], lead + (h, w, c))
  kernel = jax.random.normal(keys[1], (kh, kw, c, f)) * 0.3
  bias = jax.random.normal(keys[2], (f,))
  ref_pads = padding if isinstance(padding, str) else [tuple(p) for p in padding]
  y_ref, vjp_ref = jax.vjp(lambda *a: lax_conv(*a, strides, ref_pads), x, kernel, bias)
  y, vjp = jax.jit(lambda *a: jax.vjp(lambda *b: onednn.conv(*b, strides, padding), *a))(
      x, kernel, bias)
  assert y.shape == y_ref.shape
  dy = jax.random.normal(keys[3], y.shape)
  assert_close((y,) + vjp(dy), (y_ref,) + vjp_ref(dy))


def test_conv_without_bias_and_through_vmap():
  keys = jax.random.split(jax.random.key(3), 3)
  x = jax.random.normal(keys[0], (3, 4, 8, 8, 5))  # vmapped over 3, a batch of 4
  kernel = jax.random.normal(keys[1], (3, 3, 5, 6)) * 0.3
  bias = jax.random.normal(keys[2], (6,))
  ours = lambda x_, k_: jnp.sum(jnp.sin(onednn.conv(x_, k_, bias, (2, 2), 'SAME')))
  ref = lambda x_, k_: jnp.sum(jnp.sin(lax_conv(x_, k_, bias, (2, 2), 'SAME')))
  # Forward: the mapped axis becomes a batch axis.
  assert_close(jax.jit(jax.vmap(lambda a: onednn.conv(a, kernel)))(x),
               jax.vmap(lambda a: lax_conv(a, kernel, 0.0, (1, 1), 'SAME'))(x))
  # Gradient of a vmapped loss (input and kernel gradients).
  total = lambda f: lambda x_, k_: jnp.sum(jax.vmap(f, (0, None))(x_, k_))
  assert_close(jax.jit(jax.grad(total(ours), (0, 1)))(x, kernel),
               jax.grad(total(ref), (0, 1))(x, kernel))
  # Per-example kernel gradients (vmap of grad).
  per_example = lambda f: jax.vmap(jax.grad(f, 1), (0, None))
  got = jax.jit(per_example(ours))(x, kernel)
  assert got.shape == (3, 3, 3, 5, 6)
  assert_close(got, per_example(ref)(x, kernel))
  with pytest.raises(NotImplementedError, match='vmap over kernels'):
    jax.vmap(lambda k_: onednn.conv(x[0], k_))(jnp.stack([kernel, kernel]))


def test_sharded_batch_stays_sharded():
  """On a mesh of 4 devices each device convolves its own images; the kernel gradient is summed
  by one all-reduce; nothing is gathered; results as on one device."""
  mesh = sharding.make_mesh(jax.devices()[:4])
  keys = jax.random.split(jax.random.key(4), 3)
  x = jax.random.normal(keys[0], (8, 10, 10, 3))
  kernel = jax.random.normal(keys[1], (3, 3, 3, 4)) * 0.3
  bias = jax.random.normal(keys[2], (4,))
  loss = lambda conv: lambda x_, k_, b_: jnp.sum(jnp.sin(conv(x_, k_, b_, (2, 2), 'SAME')))
  step = jax.jit(jax.value_and_grad(loss(onednn.conv), (0, 1, 2)),
                 in_shardings=(sharding.batch_sharded(mesh), sharding.replicated(mesh),
                               sharding.replicated(mesh)))
  value, grads = step(x, kernel, bias)
  assert_close((value, grads), jax.value_and_grad(loss(lax_conv), (0, 1, 2))(x, kernel, bias))
  assert grads[0].sharding.spec[0] == 'data'
  text = step.lower(x, kernel, bias).compile().as_text()
  assert ' all-gather(' not in text
  assert text.count(' all-reduce(') >= 1


@pytest.mark.parametrize('kernel, stride', [(3, 2), (1, 2), (4, 3), (2, 1)])
def test_transposed_convolution_phases(kernel, stride):
  x = jax.random.normal(jax.random.key(5), (2, 5, 7, 3))
  k = jax.random.normal(jax.random.key(6), (kernel, kernel, 3, 4))
  fn = lambda backend: lambda x_, k_: jnp.sum(jnp.sin(
      nets.base.conv_transpose_same(x_, k_, (stride, stride), backend)))
  assert_close(nets.base.conv_transpose_same(x, k, (stride, stride), 'onednn'),
               jax.lax.conv_transpose(x, k, (stride, stride), 'SAME', dimension_numbers=DN))
  assert_close(jax.jit(jax.grad(fn('onednn'), (0, 1)))(x, k), jax.grad(fn('xla'), (0, 1))(x, k))


def test_conv_layer_has_nn_convs_parameters():
  x = jax.random.normal(jax.random.key(7), (2, 8, 8, 3))
  for args, kwargs in (((5, (3, 3)), {}), ((4, (1, 1), (2, 2)), {}),
                       ((4, (3, 3), 1), {'padding': ((1, 1), (1, 1))}),
                       ((2, (2, 3)), {'padding': 'VALID'})):
    ours, ref = onednn.Conv(*args, **kwargs), nn.Conv(*args, **kwargs)
    params = ref.init(jax.random.key(8), x)
    ours_params = ours.init(jax.random.key(8), x)
    assert jax.tree.structure(ours_params) == jax.tree.structure(params)
    for a, b in zip(jax.tree.leaves(ours_params), jax.tree.leaves(params)):
      np.testing.assert_array_equal(a, b)  # Same names, shapes and initial values.
    params = jax.tree.map(lambda p: p + 0.3, params)
    assert_close(ours.apply(params, x), ref.apply(params, x))


@pytest.mark.parametrize('net', ['conv', 'resnet', 'pixel'])
def test_nets_agree_across_backends(net):
  x = (jax.random.uniform(jax.random.key(9), (3, 12, 12, 1)) < 0.4).astype(jnp.float32)
  z = jax.random.normal(jax.random.key(10), (3, 4))
  args = (z, x) if net == 'pixel' else (z,)
  (enc_x, dec_x), (enc_o, dec_o) = (
      (built['encoder'], built['decoder']) for built in (
          nets.base.build(net, (12, 12, 1), latent_dim=4, conv_backend=b)
          for b in ('xla', 'onednn')))
  params = (enc_x.init(jax.random.key(11), x), dec_x.init(jax.random.key(12), *args))
  assert jax.tree.structure(enc_o.init(jax.random.key(11), x)) == jax.tree.structure(params[0])
  loss = lambda enc, dec: lambda pe, pd: (jnp.sum(jnp.sin(enc.apply(pe, x)[0])) +
                                          jnp.sum(jnp.sin(dec.apply(pd, *args))))
  assert_close(jax.jit(jax.value_and_grad(loss(enc_o, dec_o), (0, 1)))(*params),
               jax.value_and_grad(loss(enc_x, dec_x), (0, 1))(*params), rtol=5e-5)


def test_two_level_conv_nets_agree_across_backends():
  x = (jax.random.uniform(jax.random.key(13), (2, 12, 12, 1)) < 0.4).astype(jnp.float32)
  z = jax.random.normal(jax.random.key(14), (2, 3))
  for name in ('convhvae', 'pixelhvae'):
    ref, ours = ([built[k] for k in ('encoder_z2', 'encoder_z1', 'conditional_prior', 'decoder')]
                 for built in (nets.base.build(name, (12, 12, 1), latent_dim=3, z1_dim=3,
                                               pixelcnn_layers=1, pixelcnn_features=0,
                                               conv_backend=b) for b in ('xla', 'onednn')))
    p = ref[0].init(jax.random.key(15), x)
    assert_close(ours[0].apply(p, x), ref[0].apply(p, x))
    args = (z, z, x) if name == 'pixelhvae' else (z, z)
    p = ref[3].init(jax.random.key(16), *args)
    assert_close(ours[3].apply(p, *args), ref[3].apply(p, *args))


def test_model_gradient_agrees_across_backends_on_four_devices():
  """The negative ELBO's gradient of a ResnetVAE (12x12 images) with its batch sharded over a 'data'
  mesh of 4 devices: what XLA's convolutions give, and nothing gathered. (The compiled train step
  and the estimator run in the next test.)"""
  mesh = sharding.make_mesh(jax.devices()[:4])
  images = (np.random.default_rng(0).random((8, 12, 12, 1)) < 0.3).astype(np.float32)
  batch = sharding.shard_batch(images, mesh)
  grads, params = {}, None
  for backend in ('xla', 'onednn'):
    model = models.create(helpers.tiny_config(net='resnet', prior='standard',
                                              conv_backend=backend).model, (12, 12, 1))
    if params is None:  # The same parameters for both (the same tree: checked in other tests).
      params = sharding.replicate(model.init(jax.random.key(0), images[:1],
                                             jax.random.key(1))['params'], mesh)
    neg_elbo = lambda p, x: -jnp.mean(sum(model.apply(  # pylint: disable=g-long-lambda
        {'params': p}, x, jax.random.key(3), method=model.log_weight_terms)[k] * s
        for k, s in (('log_px_z', 1), ('log_pz', 1), ('log_qz', -1))))
    grad_fn = jax.jit(jax.grad(neg_elbo)).lower(params, batch).compile()
    assert ' all-gather(' not in grad_fn.as_text()
    grads[backend] = jax.device_get(grad_fn(params, batch))
  assert_close(grads['onednn'], grads['xla'], rtol=1e-4)


def test_train_with_onednn_then_evaluate_with_either_backend(tmp_path):
  """The training loop (train step and estimator compiled over 4 devices) with conv_backend=onednn,
  and its checkpoint evaluated with both backends: the same parameters give the same estimate (same
  keys, same samples)."""
  from vaeprior_jax.evaluation import report  # pylint: disable=g-import-not-at-top
  config = helpers.tiny_config(net='conv', prior='standard', conv_backend='onednn')
  config.train.num_steps = 4
  config.train.checkpoint_every_steps = 4
  workdir = str(tmp_path)
  with helpers.mock_binarized_mnist(64):
    last = trainer.train_and_evaluate(config, workdir)
    results = {b: report.evaluate(workdir, 'test', num_samples=4, max_examples=16,
                                    active_units=False, write_images=False, conv_backend=b)
               for b in ('xla', 'onednn')}
  assert np.isfinite(last['loss'])
  assert results['onednn']['conv_backend'] == 'onednn' and results['xla']['conv_backend'] == 'xla'
  assert results['onednn']['step'] == results['xla']['step'] == 4
  np.testing.assert_allclose(results['onednn']['nll'], results['xla']['nll'], rtol=1e-5)


def test_on_device_loop_takes_the_plain_steps():
  """The on-device loop (`train.on_device`: steps inside one compiled `scan`, batch sharded over 4
  devices) with oneDNN's convolutions takes the steps that the plain compiled step takes."""
  config = helpers.tiny_config(net='conv', prior='standard', conv_backend='onednn')
  images = np.random.default_rng(0).random((48, 8, 8, 1)).astype(np.float32)
  (_, plain_losses), (_, losses) = helpers.plain_and_on_device_steps(config, images, 8, (4,))
  np.testing.assert_allclose(losses, plain_losses, rtol=2e-6)


def test_bad_inputs_have_clear_errors():
  x, k = jnp.zeros((1, 6, 6, 3)), jnp.zeros((3, 3, 3, 2))
  with pytest.raises(TypeError, match='x must be float32, got float16'):
    onednn.conv(x.astype(jnp.float16), k)
  with pytest.raises(ValueError, match=r'kernel \[kh, kw, C, F\].*kernel \(3, 3, 4, 2\)'):
    onednn.conv(x, jnp.zeros((3, 3, 4, 2)))
  with pytest.raises(ValueError, match="Unknown padding 'FULL'"):
    onednn.conv(x, k, padding='FULL')
  with pytest.raises(ValueError, match='strides must be two positive integers'):
    onednn.conv(x, k, strides=(0, 1))
  with pytest.raises(ValueError, match="Unknown conv_backend 'cudnn'; allowed: xla, onednn"):
    nets.base.build('resnet', (12, 12, 1), latent_dim=4, conv_backend='cudnn')
  with pytest.raises(ValueError, match="Unknown model.conv_backend 'mkl'; allowed: xla, onednn"):
    models.validate(helpers.tiny_config(conv_backend='mkl').model)
  assert 'CPU only' in onednn.unavailable_reason('gpu')
  assert onednn.unavailable_reason() is None  # This machine can (the dev extra installs oneDNN).
  with pytest.raises(RuntimeError, match=r"no-such-dist.*pip install 'vaeprior_jax\[onednn\]'"):
    onednn._dist_file('no-such-dist', 'x.h')  # pylint: disable=protected-access


def test_build_is_cached_and_a_failed_build_says_why(tmp_path, monkeypatch):
  path = onednn.load()
  assert os.path.dirname(path) == onednn.cache_dir() and os.path.exists(path)
  include, lib_dir = onednn.onednn_dirs()
  monkeypatch.setenv('VAEPRIOR_JAX_CACHE_DIR', str(tmp_path))
  bad = tmp_path / 'bad.cc'
  bad.write_text('this is not C++\n')
  monkeypatch.setattr(onednn, 'SOURCE', str(bad))
  blocker = tmp_path / 'a_file'
  blocker.write_text('')
  with monkeypatch.context() as m:
    m.setenv('VAEPRIOR_JAX_CACHE_DIR', str(blocker))
    with pytest.raises(RuntimeError, match='set VAEPRIOR_JAX_CACHE_DIR to a writable folder'):
      onednn.cache_dir()
  with pytest.raises(RuntimeError, match='Compiling the oneDNN custom calls failed'):
    onednn._build(include, lib_dir)  # pylint: disable=protected-access
  assert not os.listdir(tmp_path / 'onednn')  # No partial library is left.
  # A library already in the cache for this source is reused, not rebuilt.
  good = tmp_path / 'good.cc'
  good.write_text('extern "C" int vaeprior_jax_probe() { return 7; }\n')
  monkeypatch.setattr(onednn, 'SOURCE', str(good))
  built = onednn._build(include, lib_dir)  # pylint: disable=protected-access
  stamp = os.stat(built).st_mtime_ns
  assert onednn._build(include, lib_dir) == built  # pylint: disable=protected-access
  assert os.stat(built).st_mtime_ns == stamp



def test_compiled_code_is_loaded_only_from_a_private_folder_and_as_built(tmp_path, monkeypatch):
  shared = tmp_path / 'shared'
  (shared / 'onednn').mkdir(parents=True)
  os.chmod(shared / 'onednn', 0o777)  # A folder others could plant a library in.
  monkeypatch.setenv('VAEPRIOR_JAX_CACHE_DIR', str(shared))
  with pytest.raises(RuntimeError, match=r'onednn can be written by other users \(mode 0o777\)'):
    onednn.cache_dir()
  monkeypatch.setenv('VAEPRIOR_JAX_CACHE_DIR', str(tmp_path / 'mine'))
  folder = onednn.cache_dir()
  assert os.stat(folder).st_mode & 0o777 == 0o700
  library = os.path.join(folder, 'onednn_conv-test.so')
  with open(library, 'wb') as f:
    f.write(b'built')
  os.chmod(library, 0o700)
  assert not onednn.verified(library)  # No record of its hash: built again, never loaded.
  with open(library + '.sha256', 'w') as f:
    f.write(data.file_sha256(library))
  assert onednn.verified(library)
  with open(library, 'wb') as f:
    f.write(b'replaced')
  assert not onednn.verified(library)
