r"""The 1,000-sample estimator called as the README's library example calls it, in its two forms, in
one process, alternating: per-call seconds, the first call of each form included (it compiles).

  python -m benchmarks.readme_estimator --examples=200 --calls=4

  plain      `importance_weighted_log_likelihood` with a fresh log-weight lambda per call, not
             under jit (the README's example before `log_likelihood_fn`): it traces and compiles on
             every call.
  compiled   `log_likelihood_fn(model)` built once, then called.

DenseVAE + RealNVP prior (xu2019's table1 entry), random parameters on binary images. Both forms
return the same estimates (checked each call).
"""

import json
import time

from absl import app
from absl import flags
import jax
import numpy as np

import vaeprior_jax as vp
from experiments.configs import xu2019

_EXAMPLES = flags.DEFINE_integer('examples', 200, 'Examples per call.')
_SAMPLES = flags.DEFINE_integer('num_samples', 1000, 'Importance samples.')
_CALLS = flags.DEFINE_integer('calls', 4, 'Calls of each form (alternating).')
_ENTRY = flags.DEFINE_string('entry', 'table1,dense,rnvp_prior', 'xu2019 config tokens.')


def main(argv):
  del argv
  config = xu2019.get_config(_ENTRY.value)
  x = (np.random.default_rng(0).random((_EXAMPLES.value, 28, 28, 1)) < 0.3).astype(np.float32)
  model = vp.models.create(config.model, input_shape=(28, 28, 1))
  params = model.init(jax.random.key(0), x[:64], jax.random.key(1))['params']
  key = jax.random.key(3)
  compiled = vp.evaluation.estimators.log_likelihood_fn(model, num_samples=_SAMPLES.value)

  def plain():
    log_w = lambda x_, rng: model.apply({'params': params}, x_, rng,
                                        method=model.log_importance_weight)
    return vp.evaluation.estimators.importance_weighted_log_likelihood(log_w, x, key,
                                                            num_samples=_SAMPLES.value)

  times = {'plain': [], 'compiled': []}
  for _ in range(_CALLS.value):
    for name, fn in (('plain', plain), ('compiled', lambda: compiled(params, x, key))):
      start = time.perf_counter()
      out = np.asarray(jax.block_until_ready(fn()))
      times[name].append(time.perf_counter() - start)
      if name == 'plain':
        reference = out
      else:
        np.testing.assert_allclose(out, reference, rtol=1e-5, atol=1e-4)
  steady = {k: float(np.median(v[1:])) for k, v in times.items()}
  print(json.dumps({'examples': _EXAMPLES.value, 'num_samples': _SAMPLES.value,
                    'seconds_per_call': times, 'steady_median_s': steady,
                    'plain_over_compiled': steady['plain'] / steady['compiled'],
                    'jax': jax.__version__, 'backend': jax.default_backend()}, indent=2))


if __name__ == '__main__':
  app.run(main)
