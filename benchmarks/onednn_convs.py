r"""The library's two CPU convolution backends side by side: model.conv_backend=xla and =onednn.

  pip install -e '.[onednn]'   # onednn-cpu-gomp + onednn-devel-cpu-gomp 2023.2.0 (and g++)
  python -m benchmarks.onednn_convs [--net=resnet] [--prior=standard] [--workload=train|nll]
  python -m benchmarks.onednn_convs --tomczak2018=table1,convhvae,vampprior

Builds the workload of `benchmarks.jax_workloads` twice, once per backend (same initial parameters:
both backends' layers have the same parameters), checks that they agree (the first train step's
loss, or the estimate of one test batch), then times the two JAX versions and, where torch is
installed, PyTorch's peer (`torch_peer.py`; ResnetVAE only) in alternating windows of one process,
and prints one JSON line: milliseconds per window's unit (train step, or test batch; medians) and
the ratios. With
--mesh_devices=N (on the CPU with XLA_FLAGS=--xla_force_host_platform_device_count=N) both run on a
'data' mesh of N devices and the line counts the all-gathers in each compiled step.
"""

import json

from absl import app
from absl import flags
import jax
import numpy as np

_NET = flags.DEFINE_enum('net', 'resnet', ['conv', 'resnet', 'pixel'],
                        'Net (the PyTorch peer exists for resnet only).')
_PRIOR = flags.DEFINE_enum('prior', 'standard', ['standard', 'realnvp'], 'Prior.')
_WORKLOAD = flags.DEFINE_enum('workload', 'train', ['train', 'nll'],
                              'A train step, or the 1,000-sample estimator on one test batch.')
_WINDOWS = flags.DEFINE_integer('windows', 8, 'Timed windows per version.')
_STEPS = flags.DEFINE_integer('steps', 3, 'Train steps per window (train).')
_NLL_BATCH = flags.DEFINE_integer('nll_batch', 8, 'Test examples per batch (nll).')
_CHUNK = flags.DEFINE_integer('chunk_size', 100, 'Samples per vmapped chunk (nll).')
_MESH_DEVICES = flags.DEFINE_integer('mesh_devices', 1, 'Devices of the data mesh.')
_TOMCZAK = flags.DEFINE_string('tomczak2018', '', 'Instead of --net/--prior: a tomczak2018.py entry '
                               '(e.g. table1,convhvae,vampprior), its own batch size; no peer.')


def _torch_window(net, prior, workload, images):
  """A window of PyTorch's peer, or None without torch or without a peer of `net`."""
  if net != 'resnet' or _TOMCZAK.value:
    return None
  try:
    from benchmarks import torch_peer  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  if workload == 'train':
    return torch_peer.train_window(net, prior, images, _STEPS.value)
  return torch_peer.nll_window(net, prior, images, 1000, _CHUNK.value)


def main(argv):
  del argv
  from benchmarks import jax_workloads as jw  # pylint: disable=g-import-not-at-top
  from vaeprior_jax import sharding  # pylint: disable=g-import-not-at-top
  net, prior, workload = _NET.value, _PRIOR.value, _WORKLOAD.value
  mesh = sharding.make_mesh(jax.devices()[:_MESH_DEVICES.value])
  result = {'net': net, 'prior': prior, 'workload': workload, 'mesh_devices': mesh.devices.size}
  works, windows = {}, {}
  if _TOMCZAK.value:
    net, prior = _TOMCZAK.value, ''
    result.update(net=net, prior=prior)
  for backend in ('xla', 'onednn'):
    if _TOMCZAK.value:
      from experiments.configs import tomczak2018  # pylint: disable=g-import-not-at-top
      config = tomczak2018.get_config(_TOMCZAK.value)
      config.model.conv_backend = backend
    else:
      config = jw.config_for(net, prior, conv_backend=backend)
    if workload == 'train':
      work = jw.TrainWorkload(config, mesh=mesh)
      # One step from the same initial state: the losses agree to float32 rounding.
      work.state, metrics = work.compiled(work.state, work.batch, work.key)
      result[f'{backend}_first_step_loss'] = float(metrics['loss'])
      windows[backend] = lambda work=work: work.run(_STEPS.value)
      images = np.asarray(work.batch)
    else:
      work = jw.NLLWorkload(config, 1000, _CHUNK.value, _NLL_BATCH.value, mesh=mesh)
      out = work.compiled(work.params, work.x, work.key)
      result[f'{backend}_mean_log_likelihood'] = float(np.mean(out['log_likelihood']))
      windows[backend] = lambda work=work: work.run(1)
      images = np.asarray(work.x)
    result[f'{backend}_all_gathers'] = work.compiled.as_text().count(' all-gather(')
    works[backend] = work
  torch_window = _torch_window(net, prior, workload, images)
  if torch_window is not None:
    windows['torch'] = torch_window
  for fn in windows.values():
    fn()
  times = jw.alternating_windows(_WINDOWS.value, *windows.values())
  per = _STEPS.value if workload == 'train' else 1
  for name, ts in zip(windows, times):
    result[f'{name}_ms'] = 1e3 * float(np.median(ts)) / per
  result['onednn_speedup'] = result['xla_ms'] / result['onednn_ms']
  if 'torch' in windows:
    result['xla_over_torch'] = result['torch_ms'] / result['xla_ms']
    result['onednn_over_torch'] = result['torch_ms'] / result['onednn_ms']
  print(json.dumps(result))


if __name__ == '__main__':
  app.run(main)
