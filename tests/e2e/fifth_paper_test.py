"""A paper-sized extension outside the package (tests/fifth_paper/: a prior with its own evaluation
metric and sample kind, a net, a method and a config file with tokens) trains, resumes exactly,
evaluates and reports through the real binaries, with no edit to the library."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import fifth_paper  # Registers its prior, net and method in this process too.
del fifth_paper
import helpers
from vaeprior_jax import checkpoints

ROOT = helpers.ROOT
CONFIG = 'tests/fifth_paper/config.py'


def _run(binary, *flags):
  command = [sys.executable, os.path.join(ROOT, 'tests', 'mock_binary.py'), binary,
             '--import=fifth_paper', *flags]
  result = subprocess.run(command, cwd=ROOT, env=helpers.subprocess_environment(1),
                          capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  return result


def _params(workdir):
  with helpers.mock_binarized_mnist(64):
    params, step = helpers.latest_params(workdir)
  return {k: np.asarray(v) for k, v in _flat(params).items()}, step


def _flat(tree, prefix=''):
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(_flat(v, f'{prefix}{k}/'))
    else:
      out[prefix + k] = v
  return out


def test_a_fifth_paper_trains_resumes_evaluates_and_reports_through_the_binaries(tmp_path):
  whole, resumed = str(tmp_path / 'whole'), str(tmp_path / 'resumed')
  log = _run('experiments.train', f'--config={CONFIG}:quick', f'--workdir={whole}').stderr
  # Its method's phases and its own log field are on the log line.
  assert '[prior]' in log and ' scale ' in log
  # The same run stopped after the first phase, then resumed with the full budget.
  _run('experiments.train', f'--config={CONFIG}:quick', f'--workdir={resumed}',
       '--config.train.num_steps=2')
  _run('experiments.train', f'--config={CONFIG}:quick', f'--workdir={resumed}')
  (a, step_a), (b, step_b) = _params(whole), _params(resumed)
  assert step_a == step_b == 4 and a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)
  assert float(a['prior/log_scale']) != 0.0  # The prior's phase trained it.

  _run('experiments.evaluate', f'--workdir={whole}', '--max_examples=8')
  with open(os.path.join(whole, 'eval_test_subset8_seed0.json')) as f:
    result = json.load(f)
  assert np.isfinite(result['nll']) and result['num_examples'] == 8
  # The prior's own metric, from its hooks: the scale the checkpoint holds.
  assert result['prior_scale'] == pytest.approx(float(np.exp(a['prior/log_scale'])), rel=1e-6)
  # The paper number of the config file's entry, as for the library's papers.
  assert result['paper_nll'] == 99.5 and result['entry'] == 'quick'
  # Its own sample kind, as a grid beside the model's samples.
  assert os.path.exists(os.path.join(whole, 'shrunk_samples.png'))
  assert os.path.exists(os.path.join(whole, 'samples.png'))
  assert checkpoints.load_config(whole).model.prior == 'fifth_scaled_normal'
