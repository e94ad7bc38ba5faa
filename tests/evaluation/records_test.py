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
