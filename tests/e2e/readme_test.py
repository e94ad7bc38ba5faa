"""The README's library example runs as it is written, and its numbers are sane."""

import contextlib
import io
import os
import re

import jax
import numpy as np

import helpers

README = os.path.join(helpers.ROOT, 'README.md')


def _library_example() -> str:
  """The first python block after the README's '## The library' heading."""
  with open(README) as f:
    text = f.read()
  section = text[text.index('\n## The library\n'):]
  match = re.search(r'```python\n(.*?)```', section, re.DOTALL)
  assert match, 'README.md: no python block under "## The library"'
  return match.group(1)


def test_library_example_runs_and_its_estimate_bounds_the_elbo():
  namespace = {'__name__': 'readme_example'}
  printed = io.StringIO()
  with contextlib.redirect_stdout(printed):
    code = compile(_library_example(), 'README.md (The library)', 'exec')
    exec(code, namespace)  # pylint: disable=exec-used
  assert re.fullmatch(r'loss [\d.]+, NLL [\d.]+ nats, samples \(16, 28, 28, 1\)\n',
                      printed.getvalue()), printed.getvalue()
  model, params, x = namespace['model'], namespace['params'], namespace['x'][:8]
  log_px = np.asarray(namespace['log_px'])
  assert log_px.shape == (8,) and np.all(np.isfinite(log_px))
  samples = np.asarray(namespace['samples'])
  assert samples.min() >= 0.0 and samples.max() <= 1.0  # Bernoulli means
  # The 1,000-sample estimate of log p(x) is above the ELBO (here its mean over 200 draws) for every
  # example: E[log mean_K w] >= E[log w], and the gap is several nats for a barely trained model.
  elbo = jax.vmap(lambda k: model.apply({'params': params}, x, k))(
      jax.random.split(jax.random.key(5), 200))
  assert np.all(log_px > np.asarray(elbo.mean(0)))
