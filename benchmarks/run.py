r"""The benchmark suite: speed and memory of training and of the 1,000-sample estimator, against a
PyTorch peer and the machine's matrix-product peak. Run by hand; results go to benchmarks/LOG.md (and RESULTS.md).

  python -m benchmarks.run                       # everything that applies to the devices present
  python -m benchmarks.run --only=train,nll --json=/tmp/bench.json

Sections (--only): matmul (dense float32 matrix-product peak), train (DenseVAE / ResnetVAE x
standard / RealNVP prior K=20, batch 128: examples/s, XLA memory, FLOP/s), nll (1,000-sample
estimator: test examples/s and memory per chunk size), peer (train and nll, or the one of them named
beside it, timed against the PyTorch peer in the same process, alternating windows; needs torch),
nll_memory (peak memory over 1,000 vs 10,000 test examples, each in a process of its own), compile
(train-step compile time for RealNVP depth K = 5, 20, 50), scaling (examples/s over 1, 2, 4 devices
where present), gpu (accelerator targets: the full-test-set NLL of ResnetVAE + RealNVP K=50, and
epochs of the on-device training loop for the paper's 2,400-epoch DenseVAE protocol).

Every timing is the median over timed windows after a warm-up; FLOPs are counted from the jaxpr
(matrix products and convolutions; `benchmarks.flops`), with XLA's own cost analysis beside them.
The library's steps compile with its XLA options (`vaeprior_jax.cpu.xla_options`); for an A/B against
XLA's defaults, run again with VAEPRIOR_JAX_XLA_DEFAULTS=0 (the environment records the setting).
"""

import datetime
import json
import os
import platform
import subprocess
import sys
import time

from absl import app
from absl import flags
import jax
import numpy as np

from vaeprior_jax.cpu import xla_options

_ONLY = flags.DEFINE_list('only', [], 'Sections to run (default: all that apply).')
_JSON = flags.DEFINE_string('json', '', 'Write all results to this JSON file.')
_WINDOWS = flags.DEFINE_integer('windows', 5, 'Timed windows per measurement.')
_NLL_EXAMPLES = flags.DEFINE_list('nll_memory_examples', ['1000', '10000'],
                                  'Test-set sizes of the nll_memory section.')
_FULL_TEST_EXAMPLES = flags.DEFINE_integer('full_test_examples', 10000,
                                           'Test examples of the gpu section\'s NLL target.')
_CONV_BACKEND = flags.DEFINE_enum('conv_backend', 'xla', ['xla', 'onednn'],
                                  "The JAX models' model.conv_backend (onednn: CPU only, opt-in).")
_GPU_EPOCHS = flags.DEFINE_integer('gpu_epochs', 20, 'Epochs timed in the gpu section.')
_GPU_SMOKE = flags.DEFINE_bool('gpu_smoke', False, 'Run the gpu section at tiny sizes, on any '
                                'backend (the CPU included): a check that it runs before an '
                                'accelerator is spent on it. Its numbers mean nothing.')
_DATA_CACHE = flags.DEFINE_string('data_cache', '', 'A data.cache_dir holding static MNIST: the gpu '
                                  'section then evaluates the real test images.')

SECTIONS = ('matmul', 'train', 'nll', 'peer', 'nll_memory', 'compile', 'scaling', 'gpu')


def _accelerator() -> bool:
  return jax.default_backend() != 'cpu'


def _cpu_name() -> str:
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor()


def environment():
  info = {'date': datetime.datetime.now().isoformat(timespec='seconds'),
          'python': platform.python_version(), 'jax': jax.__version__,
          'backend': jax.default_backend(), 'devices': [str(d) for d in jax.devices()],
          'device_kind': jax.devices()[0].device_kind, 'cpu': _cpu_name(),
          'cpu_count': os.cpu_count(), 'command': ' '.join(sys.argv),
          'library_xla_options': xla_options.compiler_options(),
          'conv_backend': _CONV_BACKEND.value,
          **xla_options.host_memory_settings()}
  try:
    import flax  # pylint: disable=g-import-not-at-top
    info['flax'] = flax.__version__
    import torch  # pylint: disable=g-import-not-at-top
    info['torch'] = torch.__version__
    info['torch_threads'] = torch.get_num_threads()
  except ImportError:
    pass
  return info


def _median(values):
  return float(np.median(values))


def _log(msg):
  print(msg, flush=True)


# ------------------------------------------------------------------------------------ sections

def run_matmul(results):
  from benchmarks import jax_workloads as jw  # pylint: disable=g-import-not-at-top
  size = 8192 if _accelerator() else 2048
  peak = jw.matmul_peak(size, num_windows=_WINDOWS.value)
  out = {'size': size, 'jax_flops_per_s': peak}
  if xla_options.compiler_options():  # The peak is the best of both compilations.
    out['jax_library_options_flops_per_s'] = jw.matmul_peak(size, num_windows=_WINDOWS.value,
                                                            library_options=True)
  if not _accelerator():
    try:
      import torch  # pylint: disable=g-import-not-at-top
      a, b = torch.randn(size, size), torch.randn(size, size)
      times = jw.time_windows(lambda: [torch.mm(a, b) for _ in range(10)], _WINDOWS.value)
      out['torch_flops_per_s'] = 10 * 2.0 * size ** 3 / _median(times)
    except ImportError:
      pass
  out['peak_flops_per_s'] = max(v for k, v in out.items() if k.endswith('flops_per_s'))
  results['matmul'] = out
  _log(f'matmul {size}^3 float32: JAX {peak / 1e9:.1f} GFLOP/s'
       + (f', JAX with the library\'s XLA options '
          f'{out["jax_library_options_flops_per_s"] / 1e9:.1f} GFLOP/s'
          if 'jax_library_options_flops_per_s' in out else '')
       + (f', PyTorch {out["torch_flops_per_s"] / 1e9:.1f} GFLOP/s' if 'torch_flops_per_s' in out
          else ''))


WORKLOADS = (('dense', 'standard'), ('dense', 'realnvp'), ('resnet', 'standard'),
             ('resnet', 'realnvp'))


def _config(net, prior, **kwargs):
  from benchmarks import jax_workloads as jw  # pylint: disable=g-import-not-at-top
  return jw.config_for(net, prior, conv_backend=_CONV_BACKEND.value, **kwargs)


def _torch_or_none():
  try:
    import torch  # pylint: disable=g-import-not-at-top
    from benchmarks import torch_peer  # pylint: disable=g-import-not-at-top
    return torch, torch_peer
  except ImportError:
    return None, None


def run_train(results, peer: bool):
  from benchmarks import jax_workloads as jw  # pylint: disable=g-import-not-at-top
  torch, torch_peer = _torch_or_none() if peer else (None, None)
  peak = results.get('matmul', {}).get('peak_flops_per_s')
  out = {}
  for net, prior in WORKLOADS:
    name = f'{net}/{prior}'
    work = jw.TrainWorkload(_config(net, prior))
    steps = jw.train_steps_per_window(net)
    entry = {'batch_size': work.batch_size, 'steps_per_window': steps,
             'compile_seconds': work.compile_seconds, **jw.memory_of(work.compiled)}
    flops = work.flops_per_step()
    entry['flops_per_step_jaxpr'] = flops
    entry['flops_per_step_xla'] = jw.xla_flops(work.compiled)
    work.run(2)
    peers = []
    if torch is not None:
      peers.append(torch_peer.train_window(net, prior, jw.random_images(work.batch_size), steps))
      peers[0]()  # Warm-up.
    jax_times, *rest = jw.alternating_windows(_WINDOWS.value, lambda: work.run(steps), *peers)
    torch_times = rest[0] if rest else []
    entry['examples_per_s'] = steps * work.batch_size / _median(jax_times)
    entry['achieved_flops_per_s'] = flops * steps / _median(jax_times)
    if peak:
      entry['fraction_of_matmul_peak'] = entry['achieved_flops_per_s'] / peak
    if torch_times:
      entry['torch_examples_per_s'] = steps * work.batch_size / _median(torch_times)
      entry['jax_over_torch'] = entry['examples_per_s'] / entry['torch_examples_per_s']
    entry['device_peak_so_far_mib'] = jw.device_peak_mib()  # The process's, never reset.
    out[name] = entry
    _log(f'train {name}: {entry["examples_per_s"]:.0f} examples/s'
         + (f' (PyTorch {entry["torch_examples_per_s"]:.0f}, ratio {entry["jax_over_torch"]:.2f})'
            if torch_times else '')
         + f', XLA peak {entry.get("xla_peak_mib", float("nan")):.0f} MiB, '
         f'{entry["achieved_flops_per_s"] / 1e9:.1f} GFLOP/s')
  results['train'] = out


def _nll_batch(net):
  return 128 if (_accelerator() or net == 'dense') else 8


def _chunks():
  return (100, 250, 1000) if _accelerator() else (10, 100, 250)


def run_nll(results, peer: bool):
  from benchmarks import jax_workloads as jw  # pylint: disable=g-import-not-at-top
  torch, torch_peer = _torch_or_none() if peer else (None, None)
  peak = results.get('matmul', {}).get('peak_flops_per_s')
  out = {}
  for net, prior in WORKLOADS:
    batch = _nll_batch(net)
    for chunk in _chunks():
      name = f'{net}/{prior}/chunk{chunk}'
      work = jw.NLLWorkload(_config(net, prior), 1000, chunk, batch)
      entry = {'batch_size': batch, 'num_samples': 1000, 'chunk_size': chunk,
               'compile_seconds': work.compile_seconds, **jw.memory_of(work.compiled)}
      flops = work.flops_per_batch()
      entry['flops_per_batch_jaxpr'] = flops
      # Time only the chunk size the binaries use by default (100) against the peer, and every
      # chunk size on its own.
      with_peer = torch is not None and chunk == 100
      work.run(1)
      peers = []
      if with_peer:
        peers.append(torch_peer.nll_window(net, prior, jw.random_images(batch), 1000, chunk))
        peers[0]()  # Warm-up.
      jax_times, *rest = jw.alternating_windows(max(3, _WINDOWS.value // 2),
                                                lambda: work.run(1), *peers)
      torch_times = rest[0] if rest else []
      entry['examples_per_s'] = batch / _median(jax_times)
      entry['achieved_flops_per_s'] = flops / _median(jax_times)
      if peak:
        entry['fraction_of_matmul_peak'] = entry['achieved_flops_per_s'] / peak
      if torch_times:
        entry['torch_examples_per_s'] = batch / _median(torch_times)
        entry['jax_over_torch'] = entry['examples_per_s'] / entry['torch_examples_per_s']
      entry['device_peak_so_far_mib'] = jw.device_peak_mib()  # The process's, never reset.
      out[name] = entry
      _log(f'nll {name} (batch {batch}): {entry["examples_per_s"]:.1f} test examples/s'
           + (f' (PyTorch {entry["torch_examples_per_s"]:.1f}, ratio '
              f'{entry["jax_over_torch"]:.2f})' if torch_times else '')
           + f', XLA peak {entry.get("xla_peak_mib", float("nan")):.0f} MiB, '
           f'{entry["achieved_flops_per_s"] / 1e9:.1f} GFLOP/s')
  results['nll'] = out


def run_nll_memory(results):
  """Each test-set size in a fresh process (`benchmarks.split_memory`): a process's peak memory only
  grows, so in this one, after the other sections, the estimator's peak would hide under theirs."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  out = {}
  for n in (int(v) for v in _NLL_EXAMPLES.value):
    command = [sys.executable, '-m', 'benchmarks.split_memory', f'--num_examples={n}',
               '--net=dense', '--prior=standard', '--num_samples=1000', '--chunk_size=100',
               '--batch_size=128']
    done = subprocess.run(command, cwd=root, capture_output=True, text=True, check=False)
    if done.returncode != 0:
      raise RuntimeError(f'{" ".join(command)} failed with exit status {done.returncode}:\n'
                         f'{done.stderr[-4000:]}')
    entry = json.loads(done.stdout.strip().splitlines()[-1])
    out[str(n)] = entry
    _log(f'nll_memory dense/standard, {n} examples (own process): {entry["seconds"]:.1f} s, '
         f'process peak RSS {entry["process_peak_rss_before_mib"]:.0f} MiB before the evaluation '
         f'(compiled, one batch done), {entry["process_peak_rss_mib"]:.0f} MiB after it; device '
         f'peak {entry["device_peak_mib"]}')
  sizes = sorted(out, key=int)
  if len(sizes) > 1:
    small, large = out[sizes[0]], out[sizes[-1]]
    growth = large['process_peak_rss_mib'] - small['process_peak_rss_mib']
    images = large['images_mib'] - small['images_mib']
    results['nll_memory_growth_mib'] = growth
    _log(f'nll_memory: the peak grew by {growth:.0f} MiB from {sizes[0]} to {sizes[-1]} examples '
         f'(their images differ by {images:.0f} MiB)')
  results['nll_memory'] = out


def run_compile(results):
  from benchmarks import jax_workloads as jw  # pylint: disable=g-import-not-at-top
  out = {}
  for depth in (5, 20, 50):
    work = jw.TrainWorkload(_config('dense', 'realnvp', flow_depth=depth))
    out[f'K{depth}'] = work.compile_seconds
    _log(f'compile dense/realnvp K={depth}: {work.compile_seconds:.2f} s')
  out['ratio_K50_over_K5'] = out['K50'] / out['K5']
  results['compile'] = out


def run_scaling(results):
  from benchmarks import jax_workloads as jw  # pylint: disable=g-import-not-at-top
  from vaeprior_jax import sharding  # pylint: disable=g-import-not-at-top
  out = {}
  for n in (1, 2, 4):
    if n > jax.device_count():
      continue
    work = jw.TrainWorkload(_config('dense', 'realnvp'),
                            mesh=sharding.make_mesh(jax.devices()[:n]))
    steps = jw.train_steps_per_window('dense')
    times = jw.time_windows(lambda: work.run(steps), _WINDOWS.value)
    out[str(n)] = steps * work.batch_size / _median(times)
    _log(f'scaling dense/realnvp over {n} device(s): {out[str(n)]:.0f} examples/s')
  results['scaling'] = out


def run_gpu(results):
  from benchmarks import jax_workloads as jw  # pylint: disable=g-import-not-at-top
  smoke = _GPU_SMOKE.value
  out = {'smoke': smoke}
  # 1. The 1,000-sample NLL of ResnetVAE + RealNVP prior (K = 50) over the whole test set.
  n = 16 if smoke else _FULL_TEST_EXAMPLES.value
  images, source = jw.random_images(n, seed=9), 'random binary images'
  config = _config('resnet', 'realnvp', flow_depth=50)
  if _DATA_CACHE.value:
    from vaeprior_jax import data  # pylint: disable=g-import-not-at-top
    data_config = config.data.copy_and_resolve_references()
    data_config.cache_dir = _DATA_CACHE.value
    images, source = data.load(data_config).test[:n], 'static MNIST test images'
  for batch, chunk in ((8, 10),) if smoke else ((128, 100), (256, 250)):
    seconds, metrics = jw.split_nll(config, images, 1000, chunk, batch)
    key = f'resnet_realnvp_K50_nll_b{batch}_c{chunk}'
    out[key] = {'seconds': seconds, 'num_examples': metrics['num_examples'], 'source': source,
                'device_peak_so_far_mib': jw.device_peak_mib()}
    _log(f'gpu {key}: {len(images)} examples x 1000 samples in {seconds:.1f} s')
  # 2. Epochs of the on-device loop (DenseVAE, batch 128, 50,000 images, 390 steps per epoch), the
  # RealNVP prior with its K = 20 blocks in a scan (flow_unroll 1) and unrolled.
  examples = 1280 if smoke else 50000
  for prior, unroll in (('standard', 1), ('realnvp', 1), ('realnvp', 20)):
    config = _config('dense', prior)
    config.model.flow_unroll = unroll
    work = jw.DeviceLoopWorkload(config, num_examples=examples)  # A call is an epoch.
    times = jw.time_windows(lambda: work.run(1), 2 if smoke else _GPU_EPOCHS.value,
                            warmup_windows=1)
    epoch = _median(times) * 50000 / examples
    name = f'dense_{prior}' + (f'_unroll{unroll}' if prior == 'realnvp' else '')
    out[f'{name}_on_device_epoch'] = {
        'seconds_per_epoch': epoch, 'steps_per_epoch': 50000 // config.train.batch_size,
        'timed_steps_per_call': work.steps_per_call,
        'projected_2400_epochs_minutes': 2400 * epoch / 60,
        'compile_seconds': work.compile_seconds}
    _log(f'gpu {name} on-device: {epoch * 1000:.1f} ms per epoch of 50,000; 2,400 epochs = '
         f'{2400 * epoch / 60:.1f} min of training steps')
  # 3. One early-stopping validation (100 samples over 10,000 validation images), DenseVAE+RNVP.
  n = 256 if smoke else 10000
  seconds, _ = jw.split_nll(_config('dense', 'realnvp'), jw.random_images(n, 3), 100, 100,
                            128 if smoke else 1000)
  out['dense_realnvp_validation_100_samples_seconds'] = seconds
  out['validation_examples'] = n
  _log(f'gpu one validation pass ({n} x 100 samples): {seconds:.2f} s; the protocol has 120')
  results['gpu'] = out


def main(argv):
  del argv
  jax.config.update('jax_enable_compilation_cache', False)  # compile times must be real
  only = set(_ONLY.value) or set(SECTIONS)
  unknown = only - set(SECTIONS)
  if unknown:
    raise app.UsageError(f'Unknown --only sections {sorted(unknown)}; allowed: {", ".join(SECTIONS)}.')
  results = {'environment': environment()}
  _log(json.dumps(results['environment'], indent=1))
  peer = 'peer' in only and _torch_or_none()[0] is not None and not _accelerator()
  # `peer` alone times both train and nll against PyTorch; beside one of them, only that one.
  peer_sections = ({'train', 'nll'} & only) or {'train', 'nll'}
  if 'peer' in only and not peer:
    _log('peer: skipped (needs torch, and runs on the CPU only).')
  for name, fn in (('matmul', run_matmul), ('gpu', run_gpu), ('train', lambda r: run_train(r, peer)),
                   ('nll', lambda r: run_nll(r, peer)), ('nll_memory', run_nll_memory),
                   ('compile', run_compile), ('scaling', run_scaling)):
    if name == 'gpu' and not _accelerator() and not _GPU_SMOKE.value:
      if name in only and _ONLY.value:
        _log('gpu: skipped (no accelerator; --gpu_smoke runs it at tiny sizes).')
      continue
    if name in only or (name in peer_sections and peer):
      start = time.perf_counter()
      fn(results)
      results.setdefault('section_seconds', {})[name] = time.perf_counter() - start
      if _JSON.value:  # Keep what is done so far.
        with open(_JSON.value, 'w') as f:
          json.dump(results, f, indent=1)


if __name__ == '__main__':
  app.run(main)
