"""Test setup: 4 simulated CPU devices, TensorFlow kept off accelerators, no network."""

import os
import sys

# Must happen before JAX initialises its backends.
os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           ' --xla_force_host_platform_device_count=4').strip()
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# One persistent compilation cache for the whole run, shared with the binaries the tests start in
# subprocesses (several of them compile the same steps). It only saves compile time; a fresh folder
# per run, so no result depends on an earlier run.
if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  import atexit  # pylint: disable=g-import-not-at-top
  import shutil  # pylint: disable=g-import-not-at-top
  import tempfile  # pylint: disable=g-import-not-at-top
  _cache = tempfile.mkdtemp(prefix='vaeprior_jax_test_cache_')
  atexit.register(shutil.rmtree, _cache, ignore_errors=True)
  os.environ['JAX_COMPILATION_CACHE_DIR'] = _cache
  os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0.2')

# The oneDNN backend's compiled custom calls (tests/onednn_test.py): built once per run, into a fresh
# folder shared by the workers, not into ~/.cache.
if 'VAEPRIOR_JAX_CACHE_DIR' not in os.environ:
  import atexit  # pylint: disable=g-import-not-at-top
  import shutil  # pylint: disable=g-import-not-at-top
  import tempfile  # pylint: disable=g-import-not-at-top
  _library_cache = tempfile.mkdtemp(prefix='vaeprior_jax_test_libraries_')
  atexit.register(shutil.rmtree, _library_cache, ignore_errors=True)
  os.environ['VAEPRIOR_JAX_CACHE_DIR'] = _library_cache
