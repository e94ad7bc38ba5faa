"""Test setup: 4 simulated CPU devices, TensorFlow kept off accelerators, no network, and XLA's
optimisation passes off (compiling is most of the suite's time) except for tests marked `optimized`,
which check a property of the compiled code users run (e.g. its rounding)."""

import os
import sys

import pytest

# Must happen before JAX initialises its backends.
os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           ' --xla_force_host_platform_device_count=4').strip()
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# As flax's tests do: the tests compare computations with each other or with independent truths at
# tolerances that hold either way; the binaries the tests start inherit it.
os.environ.setdefault('JAX_DISABLE_MOST_OPTIMIZATIONS', '1')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _fresh_folder_for(variable: str, prefix: str) -> bool:
  """Unless `variable` is set already, points it at a new temporary folder, removed at exit (the
  xdist workers and the binaries the tests start inherit it). Returns whether it did."""
  if variable in os.environ:
    return False
  import atexit  # pylint: disable=g-import-not-at-top
  import shutil  # pylint: disable=g-import-not-at-top
  import tempfile  # pylint: disable=g-import-not-at-top
  folder = tempfile.mkdtemp(prefix=prefix)
  atexit.register(shutil.rmtree, folder, ignore_errors=True)
  os.environ[variable] = folder
  return True


# One persistent compilation cache for the whole run, shared with the binaries the tests start in
# subprocesses (several of them compile the same steps). It only saves compile time; a fresh folder
# per run, so no result depends on an earlier run.
if _fresh_folder_for('JAX_COMPILATION_CACHE_DIR', 'vaeprior_jax_test_cache_'):
  os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0.2')

# The datasets the notebooks prepare (their DATA_CACHE): one folder for the whole run, so that each
# dataset is decoded from tfds once, not once per notebook (a fresh folder per run, as above).
_fresh_folder_for('VAEPRIOR_JAX_TEST_DATA_CACHE', 'vaeprior_jax_test_data_')

# The datasets tfds prepares from ../shared's files for the notebooks and binaries the tests start
# (those that do not pass their own data_dir): one folder for the whole run, not ~/tensorflow_datasets.
_fresh_folder_for('TFDS_DATA_DIR', 'vaeprior_jax_test_tfds_')

# The oneDNN backend's compiled custom calls (tests/cpu/onednn_test.py): built once per run, into a fresh
# folder shared by the workers, not into ~/.cache.
_fresh_folder_for('VAEPRIOR_JAX_CACHE_DIR', 'vaeprior_jax_test_libraries_')


def pytest_configure(config):
  config.addinivalue_line('markers', 'optimized: compile with XLA\'s optimisation passes on, as users do.')


@pytest.fixture(autouse=True)
def _optimisations_for_marked_tests(request):
  if request.node.get_closest_marker('optimized') is None:
    yield
    return
  import jax  # pylint: disable=g-import-not-at-top
  before = jax.config.read('jax_disable_most_optimizations')
  jax.config.update('jax_disable_most_optimizations', False)
  try:
    yield
  finally:
    jax.config.update('jax_disable_most_optimizations', before)
