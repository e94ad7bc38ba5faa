r"""Evaluates the latest checkpoint of a training workdir; writes eval_{split}.json and PNG grids.

  python -m experiments.evaluate --workdir=/tmp/run --num_samples=1000 --split=test
"""

import json

from absl import app
from absl import flags

from experiments import common
from vaeprior_jax import data
from vaeprior_jax import evaluate as evaluate_lib

_WORKDIR = flags.DEFINE_string('workdir', None, 'A training workdir.')
_SPLIT = flags.DEFINE_enum('split', 'test', list(data.SPLITS), 'Split to evaluate.')
_NUM_SAMPLES = flags.DEFINE_integer('num_samples', None,
                                    'Importance samples per example (default: config.eval).')
_MAX_EXAMPLES = flags.DEFINE_integer('max_examples', None,
                                     'Evaluate a seeded random subset of this many examples.')
_CHUNK_SIZE = flags.DEFINE_integer('chunk_size', None, 'Samples per vmapped chunk.')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', None, 'Examples per compiled call.')
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of the samples and of the subset.')
_ACTIVE_UNITS = flags.DEFINE_bool('active_units', True, 'Count active units on the training split.')
_CHECKPOINT = flags.DEFINE_enum('checkpoint', 'auto', list(evaluate_lib.CHECKPOINTS),
                                'Which checkpoint: best (early stopping), latest, or auto (best if '
                                'the run kept one, else latest).')
_CONV_BACKEND = flags.DEFINE_enum('conv_backend', None, ['xla', 'onednn'],
                                  'Who computes the convolutions (default: the training config\'s '
                                  'model.conv_backend; both take the same checkpoints).')
flags.mark_flags_as_required(['workdir'])


def main(argv):
  common.start(argv)
  result = evaluate_lib.evaluate(_WORKDIR.value, _SPLIT.value, _NUM_SAMPLES.value, _MAX_EXAMPLES.value,
                                 _CHUNK_SIZE.value, _BATCH_SIZE.value, _SEED.value, _ACTIVE_UNITS.value,
                                 checkpoint=_CHECKPOINT.value, conv_backend=_CONV_BACKEND.value)
  print(json.dumps(result, indent=2))


if __name__ == '__main__':
  app.run(main)
