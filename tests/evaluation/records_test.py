"""Records: every evaluation appends what it measured, how, on what and by which code."""

import json
import subprocess

import jax

import helpers
from vaeprior_jax.evaluation import records
from vaeprior_jax.evaluation import report
from vaeprior_jax.train import trainer


def test_every_evaluation_appends_a_record_of_what_was_measured_how_and_by_which_code(tmp_path):
  workdir = str(tmp_path)
  config = helpers.tiny_config()
  config.train.num_steps = 8
  with helpers.mock_binarized_mnist(64):
    trainer.train_and_evaluate(config, workdir)
    result = report.evaluate(workdir, 'test', num_samples=4, max_examples=16, active_units=False,
                             write_images=False, batch_size=8, seed=3)
    report.evaluate(workdir, 'test', num_samples=2, max_examples=16, active_units=False,
                    write_images=False, batch_size=8)
  first, second = records.read(workdir)
  assert first['kind'] == 'likelihood' and first['metrics'] == json.loads(json.dumps(result))
  assert first['protocol']['num_samples'] == 4 and first['protocol']['max_examples'] == 16
  assert first['protocol']['seed'] == 3 and first['protocol']['chunk_size'] == 4
  assert first['budget']['step'] == 8 and first['budget']['epochs'] == 1.0  # 64 images, batch 8.
  assert first['config']['model']['prior'] == config.model.prior
  assert second['protocol']['num_samples'] == 2
  prov = first['provenance']
  head = subprocess.run(['git', '-C', helpers.ROOT, 'rev-parse', 'HEAD'], capture_output=True,
                        text=True)
  if head.returncode == 0:  # (A checkout: CI's and ours.)
    assert prov['commit'] == head.stdout.strip() and isinstance(prov['dirty'], bool)
  assert prov['versions']['jax'] == jax.__version__ and prov['devices']['platform'] == 'cpu'
  assert prov['date'].endswith('+00:00')
  # The training loop's time: its logged windows' steps / rate, summed (a hand sum of the file).
  rows = [json.loads(line) for line in open(tmp_path / 'metrics.jsonl')]
  by_step = {r['step']: r['steps_per_sec'] for r in rows if 'steps_per_sec' in r}
  steps = sorted(by_step)
  expected = sum((b - a) / by_step[b] for a, b in zip([0] + steps[:-1], steps))
  assert expected > 0 and abs(first['budget']['train_seconds'] - expected) < 1e-9 * expected
  assert first['metrics']['prior_parameters'] > 0  # The runlocal entry's RealNVP prior.


def test_train_seconds_sums_windows_up_to_the_step_and_a_resumes_repeat_replaces_its_line(
    tmp_path):
  rows = [{'step': 10, 'steps_per_sec': 5.0}, {'step': 30, 'steps_per_sec': 10.0},
          {'step': 30, 'steps_per_sec': 4.0},  # The line rewritten by a resumed run.
          {'validation_nll': 90.0, 'step': 30}, {'step': 50, 'steps_per_sec': 20.0}]
  with open(tmp_path / 'metrics.jsonl', 'w') as f:
    f.write(''.join(json.dumps(r) + '\n' for r in rows) + '{"torn')
  assert records.train_seconds(str(tmp_path), 30) == 10 / 5.0 + 20 / 4.0
  assert records.train_seconds(str(tmp_path), 50) == 10 / 5.0 + 20 / 4.0 + 20 / 20.0
  assert records.train_seconds(str(tmp_path / 'none'), 50) is None


def test_prior_parameters_counts_the_prior_subtree():
  variables = {'params': {'encoder': {'w': jax.numpy.zeros((3, 4))},
                          'prior': {'means': jax.numpy.zeros((5, 2)), 'xi': jax.numpy.zeros(())}}}
  assert report.prior_parameters(variables) == 11
  assert report.prior_parameters({'params': {'encoder': {}}}) == 0
