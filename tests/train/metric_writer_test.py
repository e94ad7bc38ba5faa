"""Metrics reach both the JSON-lines file and TensorBoard's event files, and a resumed run's file
loses the lines written after its checkpoint."""

import json
import os

from tensorboard.backend.event_processing import event_accumulator

from vaeprior_jax.train import metric_writer


def test_scalars_reach_jsonl_and_tensorboard(tmp_path):
  workdir = str(tmp_path)
  writer = metric_writer.MetricWriter(workdir)
  writer.write_scalars(10, {'loss': 3.5, 'elbo': -3.5})
  writer.write_scalars(20, {'loss': 2.25})
  writer.close()
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    assert [json.loads(l) for l in f] == [{'step': 10, 'loss': 3.5, 'elbo': -3.5},
                                          {'step': 20, 'loss': 2.25}]
  events = event_accumulator.EventAccumulator(os.path.join(workdir, 'tensorboard'))
  events.Reload()
  assert sorted(events.Tags()['scalars']) == ['elbo', 'loss']
  assert [(e.step, e.value) for e in events.Scalars('loss')] == [(10, 3.5), (20, 2.25)]
  # Resuming from the checkpoint of step 10 drops what a killed run logged after it.
  metric_writer.MetricWriter(workdir, resume_from_step=10).close()
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    assert [json.loads(l)['step'] for l in f] == [10]


def test_a_torn_last_line_is_dropped_and_a_bad_middle_line_named(tmp_path):
  import pytest  # pylint: disable=g-import-not-at-top
  path = os.path.join(str(tmp_path), 'metrics.jsonl')
  with open(path, 'w') as f:
    f.write('{"step": 5, "loss": 1.0}\n{"step": 10, "loss": 0.5}\n{"step": 15, "lo')
  metric_writer.MetricWriter(str(tmp_path), resume_from_step=20).close()
  with open(path) as f:
    assert [json.loads(l)['step'] for l in f] == [5, 10]
  with open(path, 'w') as f:
    f.write('{"step": 5, "loss": 1.0}\n{"step": 1\n{"step": 15, "loss": 0.5}\n')
  with pytest.raises(ValueError, match=r'metrics.jsonl, line 2, is not JSON'):
    metric_writer.MetricWriter(str(tmp_path), resume_from_step=20)
