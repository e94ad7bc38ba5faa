r"""Peak memory and time of one whole-split evaluation, in a process of its own.

  python -m benchmarks.split_memory --num_examples=10000

Evaluates the importance-weighted estimator (`evaluation.estimators.split_metrics`, as the binaries do) of a
random-init xu2019 model over `--num_examples` random binary images, and prints one JSON line: the
seconds, the process's peak resident memory (`ru_maxrss`) before the evaluation (imports, data,
parameters, the compiled estimator and one warm-up batch) and after it, and the device's peak where
the backend reports one. A process's peak only ever grows, so `benchmarks.run --only=nll_memory`
starts one process per test-set size: measured in one process after other work, the estimator's
own peak would hide under theirs.
"""

import json
import resource

from absl import app
from absl import flags

_EXAMPLES = flags.DEFINE_integer('num_examples', 1000, 'Test-set size.')
_NET = flags.DEFINE_enum('net', 'dense', ['dense', 'conv', 'resnet', 'pixel'], 'xu2019 net.')
_PRIOR = flags.DEFINE_enum('prior', 'standard', ['standard', 'realnvp'], 'Prior.')
_SAMPLES = flags.DEFINE_integer('num_samples', 1000, 'Importance samples per test example.')
_CHUNK = flags.DEFINE_integer('chunk_size', 100, 'Samples per chunk of the estimator.')
_BATCH = flags.DEFINE_integer('batch_size', 128, 'Test examples per batch.')


def peak_rss_mib() -> float:
  """This process's peak resident memory so far (Linux reports ru_maxrss in KiB)."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv):
  del argv
  from benchmarks import jax_workloads as jw  # pylint: disable=g-import-not-at-top
  images = jw.random_images(_EXAMPLES.value, seed=5)
  before = {}
  seconds, metrics = jw.split_nll(
      jw.config_for(_NET.value, _PRIOR.value), images, _SAMPLES.value, _CHUNK.value,
      _BATCH.value, on_compiled=lambda: before.setdefault('rss', peak_rss_mib()))
  print(json.dumps({
      'num_examples': int(metrics['num_examples']), 'seconds': seconds,
      'examples_per_s': _EXAMPLES.value / seconds, 'net': _NET.value, 'prior': _PRIOR.value,
      'num_samples': _SAMPLES.value, 'chunk_size': _CHUNK.value, 'batch_size': _BATCH.value,
      'images_mib': images.nbytes / 2 ** 20,
      'process_peak_rss_before_mib': before['rss'], 'process_peak_rss_mib': peak_rss_mib(),
      'device_peak_mib': jw.device_peak_mib()}), flush=True)


if __name__ == '__main__':
  app.run(main)
