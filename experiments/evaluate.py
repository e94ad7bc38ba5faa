r"""Evaluates the latest checkpoint of a training workdir; writes eval_{split}.json and PNG grids.

  python -m experiments.evaluate --workdir=/tmp/run --num_samples=1000 --split=test

With --sample_quality (the default for the dai2019 configs' runs) it also writes
sample_quality_{protocol}.json: Fréchet distances to the data of samples, reconstructions, and
first-stage samples (two-stage runs) or base and latent-GAN samples (pull-back prior runs): the
classifier Fréchet distance (CFD, an offline stand-in, not FID) on labelled datasets, and FID when
--fid_weights names pytorch-fid's Inception file. That report alone, for a pull-back prior run with
other MALA settings than its config's and bootstrap error bars:

  python -m experiments.evaluate --workdir=/tmp/run --sample_quality --likelihood=false \
      --quality_images=1000 --mala_steps=150 --mala_adapt_steps=50 --quality_bootstrap=200
"""

import json

from absl import app
from absl import flags

from experiments import common
from vaeprior_jax import checkpoints
from vaeprior_jax import data
from vaeprior_jax import hooks
from vaeprior_jax.evaluation import report as evaluate_lib
from vaeprior_jax.evaluation.sample_quality import fid

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
_SAMPLE_QUALITY = flags.DEFINE_bool(
    'sample_quality', None, 'Also write sample_quality_{protocol}.json (default: for runs of the '
    'dai2019 configs).')
_CLASSIFIER_DIR = flags.DEFINE_string(
    'classifier_dir', None, 'Folder of the CFD classifier (trained there on first use; default '
    'WORKDIR/classifier). Give runs that are compared the same folder.')
_FID_WEIGHTS = flags.DEFINE_string(
    'fid_weights', None, f'pytorch-fid\'s {fid.FID_WEIGHTS_NAME} (or ${fid.WEIGHTS_ENV}): adds FID.')
_PROTOCOL = flags.DEFINE_enum(
    'quality_protocol', None, list(hooks.QUALITY_PROTOCOLS.names()),
    '; '.join(f'{name}: {hooks.QUALITY_PROTOCOLS.get(name).description}'
              for name in hooks.QUALITY_PROTOCOLS) + ' (default: the one the run\'s components '
    f'declare, else {hooks.default_quality_protocol()}).')
_QUALITY_IMAGES = flags.DEFINE_integer('quality_images', None,
                                       'Generated images (default: the protocol\'s).')
_MIN_MAX = flags.DEFINE_bool('min_max_normalize', None,
                             'Scale each generated image and reconstruction to [0, 1] first '
                             '(default: on for the two_stage protocol, as the authors\' FID script).')
_EXPORT = flags.DEFINE_bool('export_images', False, 'With --sample_quality: also write the scored '
                            'images as uint8 .npz files, for FID with the original tools.')
_MALA_STEPS = flags.DEFINE_integer('mala_steps', None, 'Pull-back prior runs: MALA steps of the '
                                   'sample-quality samples (default: the run\'s config).')
_MALA_STEP_SIZE = flags.DEFINE_float('mala_step_size', None, 'Their step size (the initial one '
                                     'when adapting; default: the run\'s config).')
_MALA_ADAPT_STEPS = flags.DEFINE_integer('mala_adapt_steps', None, 'Steps before them that tune '
                                         'the size (0: fixed; default: the run\'s config).')
_BOOTSTRAP = flags.DEFINE_integer('quality_bootstrap', 0, 'Also the bootstrap sd of each distance '
                                  'over this many resamples of its images (0: none).')
_LIKELIHOOD = flags.DEFINE_bool('likelihood', True, 'Run the likelihood evaluation (false: only '
                                'the sample-quality report, with --sample_quality).')
_AIS_TEMPERATURES = flags.DEFINE_integer(
    'log_z_ais_temperatures', None, 'Pull-back prior runs: also AIS lower and upper bounds on log Z '
    'and the NLL interval, with this many temperatures (default: the run\'s eval config, 0: none).')
_AIS_CHAINS = flags.DEFINE_integer('log_z_ais_chains', None, 'Their chains each way (default: the '
                                   'run\'s eval config, 256).')
_AIS_SMC = flags.DEFINE_bool('log_z_ais_forward_smc', None, 'Their forward run as tempered SMC, the '
                             'reverse one from its particles (default: the run\'s eval config, '
                             'false).')
flags.mark_flags_as_required(['workdir'])


def main(argv):
  common.start(argv)
  with common.user_errors(), common.stoppable():
    _evaluate()


def _ais_overrides():
  """The AIS flags as `eval` settings, checked before anything is loaded."""
  out = {}
  for flag, key, least in ((_AIS_TEMPERATURES, 'log_z_ais_temperatures', 0),
                           (_AIS_CHAINS, 'log_z_ais_chains', 2)):
    if flag.value is not None:
      if flag.value < least:
        raise ValueError(f'--{key} must be >= {least}, got {flag.value}.')
      out[key] = flag.value
  if _AIS_SMC.value is not None:
    out['log_z_ais_forward_smc'] = int(_AIS_SMC.value)
  evaluate_lib.check_eval_overrides(checkpoints.load_config(_WORKDIR.value), out)
  return out


def _evaluate():
  quality = _SAMPLE_QUALITY.value
  if quality is None:
    quality = 'paper_fid' in checkpoints.load_config(_WORKDIR.value)
  if not (_LIKELIHOOD.value or quality):
    raise ValueError('--likelihood=false leaves nothing to do without --sample_quality.')
  mala = dict(steps=_MALA_STEPS.value, step_size=_MALA_STEP_SIZE.value,
              adapt_steps=_MALA_ADAPT_STEPS.value)
  ais_overrides = _ais_overrides()  # (Errors now, before anything is loaded.)
  if quality:  # Its argument errors now, not after the likelihood evaluation.
    evaluate_lib.check_sample_quality(_WORKDIR.value, _CLASSIFIER_DIR.value, _FID_WEIGHTS.value,
                                      _PROTOCOL.value, _QUALITY_IMAGES.value, {'mala': mala},
                                      bootstrap=_BOOTSTRAP.value)
  elif (any(v is not None for v in mala.values()) or _BOOTSTRAP.value or _EXPORT.value
        or _MIN_MAX.value is not None):
    raise ValueError('--mala_steps, --mala_step_size, --mala_adapt_steps, --quality_bootstrap, '
                     '--min_max_normalize and --export_images set the sample-quality report: add '
                     '--sample_quality.')
  if _LIKELIHOOD.value:
    result = evaluate_lib.evaluate(
        _WORKDIR.value, _SPLIT.value, _NUM_SAMPLES.value, _MAX_EXAMPLES.value, _CHUNK_SIZE.value,
        _BATCH_SIZE.value, _SEED.value, _ACTIVE_UNITS.value, checkpoint=_CHECKPOINT.value,
        conv_backend=_CONV_BACKEND.value, eval_overrides=ais_overrides)
    print(json.dumps(result, indent=2))
  if quality:
    print(json.dumps(evaluate_lib.sample_quality(
        _WORKDIR.value, _CLASSIFIER_DIR.value, _FID_WEIGHTS.value, _PROTOCOL.value,
        _QUALITY_IMAGES.value, _SEED.value, _CHECKPOINT.value, _MIN_MAX.value,
        settings={'mala': mala}, bootstrap=_BOOTSTRAP.value, export=_EXPORT.value), indent=2))


if __name__ == '__main__':
  app.run(main)
