r"""A prototype, not part of the library: the ResnetVAE train step with its convolutions in oneDNN.

  pip install -e '.[onednn]'   # onednn-cpu-gomp + onednn-devel-cpu-gomp 2023.2.0: libdnnl, headers
  python -m benchmarks.onednn_convs [--prior=standard] [--windows=8]

Why: on the CPU, XLA's convolutions are what keep the ResnetVAE train step behind PyTorch's, which
uses oneDNN (benchmarks/RESULTS.md). This script asks whether oneDNN's kernels, called from the
compiled JAX step, close that gap. It compiles `onednn_convs.cc` (three XLA FFI custom calls:
forward, input gradient, kernel and bias gradients) with g++ against the installed wheels and
jaxlib's FFI headers, into a temporary folder, and registers them. While the model is built, every
flax `nn.Conv` of the ResnetVAE (3x3 and 1x1, strides 1 and 2) is replaced by `OnednnConv`: the same
parameters and initial values, computed by a `custom_vjp` of those calls (the bias gradient comes
from oneDNN's backward-weights primitive). The transposed convolutions
(`nets.conv_transpose_same`) stay XLA's.

It checks each layer kind's values and gradients against lax, and the loss of one train step against
the plain XLA step (same initial state), then times the two JAX steps and, where torch is installed,
PyTorch's peer step (`torch_peer.py`) in alternating windows of one process, and prints one JSON
line: milliseconds per step (median) and the ratios. oneDNN runs on its own OpenMP threads
(OMP_NUM_THREADS, default: all cores), beside XLA's thread pool. With --mesh_devices=N (on the CPU
with XLA_FLAGS=--xla_force_host_platform_device_count=N) both steps run on a 'data' mesh of N
devices; the oneDNN step is traced inside `jax.set_mesh`, so that each device convolves its own
rows (`shard_map`: XLA cannot partition the custom calls itself and would all-gather the batch).
"""

import contextlib
import ctypes
import json
import os
import subprocess
import sys
import tempfile

from absl import app
from absl import flags
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

_PRIOR = flags.DEFINE_enum('prior', 'standard', ['standard', 'realnvp'], 'Prior.')
_WINDOWS = flags.DEFINE_integer('windows', 8, 'Timed windows per step.')
_STEPS = flags.DEFINE_integer('steps', 3, 'Train steps per window.')
_MESH_DEVICES = flags.DEFINE_integer('mesh_devices', 1, 'Devices of the data mesh of both steps.')

_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'onednn_convs.cc')
_TARGETS = ('OnednnConvFwd', 'OnednnConvBwdData', 'OnednnConvBwdWeights')


def build_and_register() -> str:
  """Compiles onednn_convs.cc and registers its FFI targets; returns the library's path."""
  include = os.path.join(sys.prefix, 'include')
  lib_dir = os.path.join(sys.prefix, 'lib')
  if not os.path.exists(os.path.join(include, 'oneapi', 'dnnl', 'dnnl.hpp')):
    raise FileNotFoundError(f'No oneDNN headers in {include}: pip install '
                            'onednn-cpu-gomp==2023.2.0 onednn-devel-cpu-gomp==2023.2.0')
  out = os.path.join(tempfile.mkdtemp(prefix='onednn_convs_'), 'libonednn_convs.so')
  subprocess.run(['g++', '-O2', '-std=c++17', '-shared', '-fPIC', '-w', f'-I{jax.ffi.include_dir()}',
                  f'-I{include}', _SOURCE, f'-L{lib_dir}', '-ldnnl', f'-Wl,-rpath,{lib_dir}', '-o',
                  out], check=True)
  lib = ctypes.cdll.LoadLibrary(out)
  for name in _TARGETS:
    jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(getattr(lib, name)), platform='cpu')
  return out


def _pads(x_shape, kernel_shape, strides, padding):
  if isinstance(padding, str):
    return jax.lax.padtype_to_pads(x_shape[1:3], kernel_shape[:2], strides, padding)
  return padding


def onednn_conv(x, kernel, bias, strides, padding):
  """conv_general_dilated(x, kernel, strides, padding, ('NHWC', 'HWIO', 'NHWC')) + bias, in oneDNN.

  Inside `jax.set_mesh(mesh)` with a 'data' axis of several devices, each device convolves its own
  rows of the batch (`shard_map`); XLA cannot partition the custom calls by itself."""
  (pt, pb), (pl, pr) = _pads(x.shape, kernel.shape, strides, padding)
  attrs = {k: np.int64(v) for k, v in
           dict(sh=strides[0], sw=strides[1], pt=pt, pb=pb, pl=pl, pr=pr).items()}

  def forward(x_, k_):
    n, h, w, _ = x_.shape
    kh, kw, _, f = k_.shape
    out = jax.ShapeDtypeStruct((n, (h + pt + pb - kh) // strides[0] + 1,
                                (w + pl + pr - kw) // strides[1] + 1, f), jnp.float32)
    return jax.ffi.ffi_call('OnednnConvFwd', out)(x_, k_, **attrs)

  @jax.custom_vjp
  def conv(x_, k_, b_):
    return forward(x_, k_) + b_

  def conv_fwd(x_, k_, b_):
    return conv(x_, k_, b_), (x_, k_)

  def conv_bwd(res, dy):
    x_, k_ = res
    dx = jax.ffi.ffi_call('OnednnConvBwdData', jax.ShapeDtypeStruct(x_.shape, jnp.float32))(
        dy, k_, **attrs)
    dk, db = jax.ffi.ffi_call('OnednnConvBwdWeights',
                              (jax.ShapeDtypeStruct(k_.shape, jnp.float32),
                               jax.ShapeDtypeStruct((k_.shape[-1],), jnp.float32)))(x_, dy, **attrs)
    return dx, dk, db

  conv.defvjp(conv_fwd, conv_bwd)
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty or mesh.size == 1:
    return conv(x, kernel, bias)
  spec = jax.sharding.PartitionSpec
  return jax.shard_map(conv, mesh=mesh, in_specs=(spec('data'), spec(), spec()),
                       out_specs=spec('data'), check_vma=False)(x, kernel, bias)


class OnednnConv(nn.Module):
  """nn.Conv(features, kernel_size, strides, padding) with the same parameters, in oneDNN."""
  features: int
  kernel_size: tuple
  strides: tuple = (1, 1)
  padding: str = 'SAME'

  @nn.compact
  def __call__(self, x):
    kernel = self.param('kernel', nn.linear.default_kernel_init,
                        tuple(self.kernel_size) + (x.shape[-1], self.features), jnp.float32)
    bias = self.param('bias', nn.initializers.zeros_init(), (self.features,), jnp.float32)
    return onednn_conv(x, kernel, bias, tuple(self.strides or (1, 1)), self.padding)


@contextlib.contextmanager
def convolutions_in_onednn():
  """Within the block, flax's nn.Conv (as the library's nets call it) is OnednnConv."""
  original = nn.Conv
  nn.Conv = OnednnConv
  try:
    yield
  finally:
    nn.Conv = original


def check_layers():
  """Largest relative error of values and gradients against lax, over the layer kinds used."""
  worst = 0.0
  for size, cin, cout, k, s in ((28, 32, 32, 3, 1), (28, 32, 64, 3, 2), (28, 32, 64, 1, 2),
                                (14, 64, 64, 3, 1), (7, 16, 64, 1, 1)):
    keys = jax.random.split(jax.random.key(size * k + s), 4)
    x = jax.random.normal(keys[0], (4, size, size, cin))
    kernel = jax.random.normal(keys[1], (k, k, cin, cout)) * 0.1
    bias = jax.random.normal(keys[2], (cout,))
    plain = lambda x_, k_, b_, s=s: jax.lax.conv_general_dilated(
        x_, k_, (s, s), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC')) + b_
    ours = lambda x_, k_, b_, s=s: onednn_conv(x_, k_, b_, (s, s), 'SAME')
    y_ref, vjp_ref = jax.vjp(plain, x, kernel, bias)
    y, vjp = jax.vjp(ours, x, kernel, bias)
    dy = jax.random.normal(keys[3], y.shape)
    for a, b in zip((y,) + vjp(dy), (y_ref,) + vjp_ref(dy)):
      worst = max(worst, float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b))))
  return worst


def main(argv):
  del argv
  from benchmarks import jax_workloads as jw  # pylint: disable=g-import-not-at-top
  from vaeprior_jax import sharding  # pylint: disable=g-import-not-at-top
  build_and_register()
  result = {'prior': _PRIOR.value, 'layers_max_relative_error': check_layers()}
  config = jw.config_for('resnet', _PRIOR.value)
  mesh = sharding.make_mesh(jax.devices()[:_MESH_DEVICES.value])
  plain = jw.TrainWorkload(config, mesh=mesh)
  with convolutions_in_onednn(), jax.set_mesh(mesh):
    onednn = jw.TrainWorkload(config, mesh=mesh)
  result['mesh_devices'] = mesh.devices.size
  result['all_gathers_in_onednn_step'] = onednn.compiled.as_text().count(' all-gather(')
  # One step from the same initial state: the losses agree to float32 rounding.
  plain.state, m_plain = plain.compiled(plain.state, plain.batch, plain.key)
  onednn.state, m_onednn = onednn.compiled(onednn.state, onednn.batch, onednn.key)
  result['first_step_loss'] = [float(m_plain['loss']), float(m_onednn['loss'])]
  steps = _STEPS.value
  windows = {'xla': lambda: plain.run(steps), 'onednn': lambda: onednn.run(steps)}
  try:
    import torch  # pylint: disable=g-import-not-at-top
    from benchmarks import torch_peer  # pylint: disable=g-import-not-at-top
    torch.manual_seed(0)
    step = torch_peer.make_train_step(torch_peer.VAE('resnet', _PRIOR.value))
    x = torch.from_numpy(jw.random_images(plain.batch_size).transpose(0, 3, 1, 2).copy())
    windows['torch'] = lambda: [step(x) for _ in range(steps)]
  except ImportError:
    pass
  for fn in windows.values():
    fn()
  times = jw.alternating_windows(_WINDOWS.value, *windows.values())
  for name, ts in zip(windows, times):
    result[f'{name}_ms_per_step'] = 1e3 * float(np.median(ts)) / steps
  result['onednn_speedup'] = result['xla_ms_per_step'] / result['onednn_ms_per_step']
  if 'torch' in windows:
    result['xla_over_torch'] = result['torch_ms_per_step'] / result['xla_ms_per_step']
    result['onednn_over_torch'] = result['torch_ms_per_step'] / result['onednn_ms_per_step']
  print(json.dumps(result))


if __name__ == '__main__':
  app.run(main)
