"""experiments.sweep: one entry over seeds, resumable, aggregated into a record."""

import json
import os

import numpy as np
import pytest

import helpers
from experiments import sweep
from vaeprior_jax.evaluation import records


def test_a_sweep_trains_and_evaluates_each_seed_once_and_aggregates_them(tmp_path):
  config = helpers.tiny_config()
  config.train.num_steps = 4
  root = str(tmp_path / 'sweep')
  with helpers.mock_binarized_mnist(64):
    summary = sweep.run(config, root, ['0', '1'], num_samples=3, max_examples=16)
    per_seed = {}
    for seed in (0, 1):
      with open(os.path.join(root, f'seed{seed}', 'config.json')) as f:
        assert json.load(f)['seed'] == seed
      with open(os.path.join(root, f'seed{seed}', 'eval_test_subset16_seed0.json')) as f:
        per_seed[seed] = json.load(f)
    assert per_seed[0]['nll'] != per_seed[1]['nll']  # Two seeds, two models.
    nll = summary['aggregate']['nll']
    values = [per_seed[0]['nll'], per_seed[1]['nll']]
    assert nll['values'] == values and nll['n'] == 2
    np.testing.assert_allclose(nll['mean'], np.mean(values), rtol=1e-12)
    np.testing.assert_allclose(nll['sd'], abs(values[0] - values[1]) / np.sqrt(2), rtol=1e-12)
    # Run again: nothing is trained or evaluated twice (the records say what is done).
    before = {s: len(records.read(os.path.join(root, f'seed{s}'))) for s in (0, 1)}
    again = sweep.run(config, root, ['0', '1'], num_samples=3, max_examples=16)
    assert {s: len(records.read(os.path.join(root, f'seed{s}'))) for s in (0, 1)} == before
    assert again['aggregate'] == summary['aggregate']
    # Another protocol is evaluated anew.
    third = sweep.run(config, root, ['0', '1'], num_samples=2, max_examples=16)
    assert third['aggregate']['nll']['values'] != nll['values']
  kinds = [r['kind'] for r in records.read(root)]
  assert kinds == ['sweep'] * 3
  with pytest.raises(ValueError, match=r'--seeds must be distinct integers >= 0, got \[1, 1\]'):
    sweep.run(config, root, ['1', '1'])
