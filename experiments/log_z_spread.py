r"""The spread of VAEPP's posterior-based log Z estimate with the truncated and with the plain normal
q(z|x) (the paper's Sec. 5.1), for a trained pull-back run: the same parameters, `--repeats`
estimates per posterior, each over `--images` training images (a seeded subset, another per repeat)
and `--samples` samples per image. Writes WORKDIR/analysis/log_z_spread.json.

  python -m experiments.log_z_spread --workdir=runs/vaepp_static --repeats=10 --images=500 \
      --samples=100
"""

import json
import os

import jax
import numpy as np
from absl import app
from absl import flags

from experiments import common
from vaeprior_jax import checkpoints
from vaeprior_jax import config as config_lib
from vaeprior_jax import data
from vaeprior_jax import models
from vaeprior_jax.priors.pullback import normalizer
from vaeprior_jax import sharding

_WORKDIR = flags.DEFINE_string('workdir', None, 'A trained run with model.prior=pullback.')
_REPEATS = flags.DEFINE_integer('repeats', 10, 'Estimates per posterior.')
_IMAGES = flags.DEFINE_integer('images', 500, 'Training images per estimate.')
_SAMPLES = flags.DEFINE_integer('samples', 100, 'Samples per image.')
flags.mark_flags_as_required(['workdir'])


def log_z_spread(workdir: str, repeats: int, num_images: int, samples: int):
  config = common.pullback_run_config(workdir)
  dataset = data.load(config.data)
  train = dataset.eval_images('train', 0)
  mesh = sharding.make_mesh()
  batch = sharding.round_up_to_devices(100, mesh)
  result = {'repeats': repeats, 'images': num_images, 'samples_per_image': samples}
  for posterior in ('truncated_gaussian', 'gaussian'):
    mc = config_lib.complete_section(dict(config.model.to_dict(), posterior=posterior), 'model')
    model = models.create(mc, dataset.input_shape)
    variables, step = checkpoints.restore_variables(workdir, config, model, dataset.input_shape)
    fn = normalizer.posterior_log_z_fn(model, samples, min(samples, 100))
    estimates = []
    for r in range(repeats):
      rows = np.sort(np.random.default_rng(r).permutation(len(train))[:num_images])
      est = normalizer.posterior_log_z(model, variables, train[rows], jax.random.key(r), mesh,
                                      len(train), samples, min(samples, 100), batch, fn)
      estimates.append(est)
    values = [e['log_z'] for e in estimates]
    result[posterior] = {'log_z': values, 'mean': float(np.mean(values)),
                         'sd': float(np.std(values, ddof=1)),
                         'reported_stderr': [e['log_z_stderr'] for e in estimates]}
  result['step'] = int(step)
  os.makedirs(os.path.join(workdir, 'analysis'), exist_ok=True)
  with open(os.path.join(workdir, 'analysis', 'log_z_spread.json'), 'w') as f:
    json.dump(result, f, indent=2)
  return result


def main(argv):
  common.start(argv)
  with common.user_errors(), common.stoppable():
    print(json.dumps(log_z_spread(_WORKDIR.value, _REPEATS.value, _IMAGES.value, _SAMPLES.value),
                     indent=2))


if __name__ == '__main__':
  app.run(main)
