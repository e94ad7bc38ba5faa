r"""The paper's analyses of trained workdirs (App. B.3-B.4, Figs. 1-3, Tables 7-8).

  python -m experiments.analyze --workdir=runs/dense_standard,runs/dense_realnvp \
      --max_examples=10000 --compare_out=runs/compare

Writes, per workdir, analysis/analysis.json (reconstruction, kl, kl_z|x, elbo, NLL, active units;
posterior-std, closest-pair-distance and normalized-distance histograms; interpolation log p(z)),
figure1_samples.png, figure2_interpolations.png and figure3_histograms.png; with several workdirs and
--compare_out, one figure3 with their histograms overlaid and a JSON table of their metrics. For a
two-stage run (Dai & Wipf), analysis/two_stage.json with gamma and gamma_z over training and the
singular-value spectra of q(z) and q(u) against N(0, I)'s, figure1_gamma.png and figure1_spectra.png.
"""

import json
import os

from absl import app
from absl import flags
from absl import logging

from experiments import common
from vaeprior_jax import checkpoints
from vaeprior_jax.evaluation import analysis
from vaeprior_jax.evaluation import report
from vaeprior_jax import models

_WORKDIRS = flags.DEFINE_list('workdir', None, 'Training workdir(s), comma-separated.')
_SPLIT = flags.DEFINE_enum('split', 'test', ['train', 'validation', 'test'], 'Split of the metrics.')
_NUM_SAMPLES = flags.DEFINE_integer('num_samples', 1000, 'Importance samples; Monte Carlo samples '
                                   'of the posterior moments (RealNVP posteriors).')
_MAX_EXAMPLES = flags.DEFINE_integer('max_examples', 0, 'If > 0, a seeded random subset of this size '
                                     '(of the metrics split and of the training images).')
_NUM_PAIRS = flags.DEFINE_integer('num_pairs', 6, 'Interpolations (Fig. 2).')
_NUM_STEPS = flags.DEFINE_integer('num_steps', 8, 'Interpolation points between the two ends.')
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of the subsets, pairs and samples.')
_CHECKPOINT = flags.DEFINE_enum('checkpoint', 'auto', list(report.CHECKPOINTS),
                                'Which checkpoint: auto (best if kept, else latest), latest, best.')
_COMPARE_OUT = flags.DEFINE_string('compare_out', '', 'Folder for the comparison of several workdirs.')
flags.mark_flags_as_required(['workdir'])


def main(argv):
  common.start(argv)
  with common.user_errors(), common.stoppable():
    _analyze()


def _analyze():
  results = {}
  for workdir in _WORKDIRS.value:
    config = checkpoints.load_config(workdir)
    if models.model_class(config.model) is models.TwoStageVAE:  # Dai & Wipf: gamma, spectra.
      result = analysis.analyze_two_stage(workdir, _MAX_EXAMPLES.value or 10000, _SEED.value,
                                          _CHECKPOINT.value)
      logging.info('%s: distances to N(0, I)\'s spectrum %s', workdir,
                   json.dumps(result['distance_to_standard_normal']))
      continue
    results[workdir] = analysis.analyze_workdir(
        workdir, _SPLIT.value, _NUM_SAMPLES.value, _MAX_EXAMPLES.value, _NUM_PAIRS.value,
        _NUM_STEPS.value, _SEED.value, _CHECKPOINT.value)
    logging.info('%s: %s', workdir, json.dumps(results[workdir]['metrics']))
  if _COMPARE_OUT.value:
    os.makedirs(_COMPARE_OUT.value, exist_ok=True)
    analysis.plot_histograms({os.path.basename(os.path.normpath(w)): r['_pairs']
                              for w, r in results.items()},
                             os.path.join(_COMPARE_OUT.value, 'figure3_histograms.png'))
    with open(os.path.join(_COMPARE_OUT.value, 'metrics.json'), 'w') as f:
      json.dump({w: r['metrics'] for w, r in results.items()}, f, indent=2)


if __name__ == '__main__':
  app.run(main)
