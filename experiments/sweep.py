r"""Trains and evaluates one config entry over several seeds, and aggregates the results.

  python -m experiments.sweep --config=experiments/configs/xu2019.py:quickstart --seeds=0,1,2 \
      --root=runs/quickstart_seeds --config.data.manual_dir=../shared/data/binarized_mnist

Seed S trains in ROOT/seed{S} (`config.seed = S`; rerunning resumes it, as `train` does) and is
then evaluated with `--num_samples` importance samples on the test split (or a seeded subset of
`--max_examples`), unless ROOT/seed{S}/records.jsonl already holds that evaluation of its latest
checkpoint: a sweep killed anywhere and run again repeats no finished work. The aggregate, each
metric's mean and standard deviation over seeds (n - 1 in the denominator) beside the per-seed
values, goes to ROOT/sweep.json and, as a record of kind 'sweep', to ROOT/records.jsonl.
"""

import json
import os

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from experiments import common

_ROOT = flags.DEFINE_string('root', None, 'Folder of the sweep: one workdir per seed in it.')
_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file.', lock_config=False)
_SEEDS = flags.DEFINE_list('seeds', ['0', '1', '2'], 'Seeds to train and evaluate.')
_NUM_SAMPLES = flags.DEFINE_integer('num_samples', None,
                                    'Importance samples per test image (default: the config\'s).')
_MAX_EXAMPLES = flags.DEFINE_integer('max_examples', None,
                                     'A seeded subset of test images (default: all).')
flags.mark_flags_as_required(['config', 'root'])

# The metrics aggregated over seeds, where the evaluations report them.
METRICS = ('nll', 'elbo', 'reconstruction', 'kl', 'kl_z_given_x', 'active_units', 'bits_per_dim',
           'prior_parameters', 'nll_with_prior_log_z', 'nll_ais_lower', 'nll_ais_upper',
           'log_z', 'log_z_prior', 'log_z_ais_lower', 'log_z_ais_upper')


def _evaluated(workdir: str, step: int, num_samples: int, max_examples):
  """The metrics of a finished evaluation of `workdir`'s checkpoint of `step` with this protocol on
  the test split, from its records, or None."""
  from vaeprior_jax.evaluation import records  # pylint: disable=g-import-not-at-top
  for record in reversed(records.read(workdir)):
    p = record.get('protocol', {})
    if (record.get('kind') == 'likelihood' and record.get('budget', {}).get('step') == step
        and p.get('split') == 'test' and p.get('num_samples') == num_samples
        and p.get('max_examples') == max_examples):
      return record['metrics']
  return None


def _checkpoint_step(workdir: str) -> int:
  """The step of the checkpoint `evaluate` reads by default ('auto': the best one with early
  stopping, else the latest)."""
  from vaeprior_jax import checkpoints  # pylint: disable=g-import-not-at-top
  if checkpoints.resolve_checkpoint(workdir, 'auto') == 'best':
    manager = checkpoints.best_checkpoint_manager(workdir)
    step = manager.best_step()
  else:
    manager = checkpoints.checkpoint_manager(workdir)
    step = manager.latest_step()
  manager.close()
  return step


def aggregate(per_seed):
  """{metric: {'mean', 'sd', 'n', 'values'}} over the seeds' results ({seed: metrics})."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  out = {}
  for metric in METRICS:
    values = [float(m[metric]) for m in per_seed.values() if metric in m]
    if not values:
      continue
    out[metric] = {'mean': float(np.mean(values)),
                   'sd': float(np.std(values, ddof=1)) if len(values) > 1 else None,
                   'n': len(values), 'values': values}
  return out


def run(config, root: str, seeds, num_samples=None, max_examples=None):
  """Trains and evaluates `config` for each seed under `root` (see the module docstring); returns
  the aggregate, also written to root/sweep.json and root/records.jsonl."""
  from vaeprior_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  from vaeprior_jax.evaluation import records  # pylint: disable=g-import-not-at-top
  from vaeprior_jax.evaluation import report  # pylint: disable=g-import-not-at-top
  from vaeprior_jax.train import trainer  # pylint: disable=g-import-not-at-top
  seeds = [int(s) for s in seeds]
  if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
    raise ValueError(f'--seeds must be distinct integers >= 0, got {seeds}.')
  report.check_arguments(num_samples, max_examples)
  config = config_lib.complete(config)
  num_samples = num_samples or config.eval.num_samples
  os.makedirs(root, exist_ok=True)
  per_seed = {}
  for seed in seeds:
    workdir = os.path.join(root, f'seed{seed}')
    seeded = config_lib.complete(config.to_dict())
    seeded.seed = seed
    trainer.train_and_evaluate(seeded, workdir)
    result = _evaluated(workdir, _checkpoint_step(workdir), num_samples, max_examples)
    if result is None:
      result = report.evaluate(workdir, 'test', num_samples, max_examples, write_images=False)
    else:
      logging.info('seed %d: evaluated already (records.jsonl).', seed)
    per_seed[seed] = result
  summary = {'entry': config.get('entry', ''), 'seeds': seeds, 'num_samples': num_samples,
             'max_examples': max_examples, 'per_seed': per_seed, 'aggregate': aggregate(per_seed)}
  with open(os.path.join(root, 'sweep.json'), 'w') as f:
    json.dump(summary, f, indent=2, default=float)
  records.append(root, 'sweep', config, summary['aggregate'],
                 {'seeds': seeds, 'num_samples': num_samples, 'max_examples': max_examples,
                  'split': 'test'},
                 budget={'steps': {s: r.get('step') for s, r in per_seed.items()}})
  return summary


def main(argv):
  common.start(argv)
  from vaeprior_jax.train import trainer  # pylint: disable=g-import-not-at-top
  try:
    with common.user_errors(), common.stoppable():
      config = common.config_value(_CONFIG)
      summary = run(config, _ROOT.value, _SEEDS.value, _NUM_SAMPLES.value, _MAX_EXAMPLES.value)
  except trainer.Preempted as e:  # Its checkpoint is saved: rerun the same command to go on.
    logging.warning('%s', e)
    raise SystemExit(e.exit_code) from None
  print(json.dumps(summary['aggregate'], indent=2))


if __name__ == '__main__':
  app.run(main, flags_parser=common.parse_flags)
