r"""Trains a VAE from a config file; resumes from the latest checkpoint in --workdir.

  python -m experiments.train --config=experiments/configs/xu2019.py --workdir=/tmp/run \
      --config.data.manual_dir=../shared/data/binarized_mnist --config.train.num_steps=20000
"""

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from experiments import common

from vaeprior_jax.evaluation import report
from vaeprior_jax.train import trainer

_WORKDIR = flags.DEFINE_string('workdir', None, 'Folder for checkpoints, metrics and config.')
_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file.', lock_config=True)
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  common.start(argv)
  with common.user_errors():
    config = common.config_value(_CONFIG)
  # The whole config goes to WORKDIR/config.json (and to the log file with -v 1), not the console.
  logging.vlog(1, 'Config:\n%s', config)
  logging.info('Config %s; all its values: %s/config.json.',
               config.get('entry', '') or 'as given', _WORKDIR.value)
  if report.paper_nll(config) is not None:
    logging.info("Paper's test NLL for %s: %.2f nats.", config.entry, config.paper_nll)
  try:
    with common.user_errors():
      trainer.train_and_evaluate(config, _WORKDIR.value)
  except trainer.Preempted as e:
    logging.warning('%s', e)
    raise SystemExit(e.exit_code) from None


if __name__ == '__main__':
  app.run(main, flags_parser=common.parse_flags)
