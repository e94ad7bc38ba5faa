"""Faults a long run meets: a damaged newest checkpoint is moved aside (never deleted) and the one
before it restored, by `train` (which then repeats the uninterrupted run exactly) and by `evaluate`;
a second run on a workdir in use; a save that fails; several CPU devices."""

import os
import shutil

import jax
import numpy as np
import pytest

import helpers
from vaeprior_jax import checkpoints
from vaeprior_jax import config as config_lib
from vaeprior_jax.evaluation import report
from vaeprior_jax.train import trainer


def _config():
  config = helpers.tiny_config()
  config.train.num_steps = 6
  config.train.checkpoint_every_steps = 2
  config.train.max_checkpoints_to_keep = 10
  return config


def _long_config():
  config = _config()
  config.train.num_steps = 32
  config.train.checkpoint_every_steps = 16
  config.train.log_every_steps = 32
  return config


def _damage_data(workdir, step):
  """Truncates every array file of the checkpoint of `step`."""
  folder = os.path.join(workdir, 'checkpoints', str(step), 'default')
  for root, _, files in os.walk(folder):
    if os.sep + 'd' in root:
      for name in files:
        with open(os.path.join(root, name), 'r+b') as f:
          f.truncate(7)


def _damage_metadata(workdir, step):
  with open(os.path.join(workdir, 'checkpoints', str(step), 'default', '_METADATA'), 'w') as f:
    f.write('{"not": "orbax')


def test_a_damaged_newest_checkpoint_is_moved_aside_and_the_previous_one_resumed(tmp_path,
                                                                                monkeypatch):
  from vaeprior_jax import sharding  # pylint: disable=g-import-not-at-top
  config, full = _long_config(), str(tmp_path / 'full')
  # On several CPU devices (the tests' 4) the loop waits every 16 steps, and nowhere else: XLA:CPU's
  # collectives abort a run whose host dispatches a log interval of sharded steps ahead.
  assert trainer.cpu_steps_in_flight(sharding.make_mesh()) == 16
  waits = []
  real = jax.block_until_ready
  monkeypatch.setattr(jax, 'block_until_ready', lambda x: waits.append(1) or real(x))
  with helpers.mock_binarized_mnist(64):
    trainer.train_and_evaluate(config, full)
    assert len(waits) == 32 // 16, len(waits)
    monkeypatch.undo()
    reference, _ = helpers.latest_params(full)
    for name, damage in (('data', _damage_data), ('metadata', _damage_metadata)):
      run = str(tmp_path / name)
      shutil.copytree(full, run)
      damage(run, 32)
      if name == 'data':  # evaluate falls back too (and moves the step aside itself).
        result = report.evaluate(run, 'test', num_samples=2, max_examples=8, active_units=False,
                                   write_images=False)
        assert result['step'] == 16
      trainer.train_and_evaluate(config, run)
      params, step = helpers.latest_params(run)
      assert step == 32, name
      jax.tree.map(np.testing.assert_array_equal, params, reference)
      aside = os.listdir(os.path.join(run, 'checkpoints_unreadable'))
      assert len(aside) == 1 and aside[0].startswith('32-'), (name, aside)


def test_a_second_run_on_a_workdir_in_use_stops_with_one_line_naming_the_holder(tmp_path):
  import pytest  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path / 'run')
  os.makedirs(workdir)
  with checkpoints.WorkdirLock(workdir):
    with pytest.raises(RuntimeError, match=rf'run is in use by pid {os.getpid()} on .*one run per '
                                           'workdir'):
      trainer.train_and_evaluate(_config(), workdir)
  assert not os.path.exists(os.path.join(workdir, 'config.json'))  # Nothing written.
  with checkpoints.WorkdirLock(workdir):  # Released: free again.
    pass


def test_a_save_that_fails_stops_training_at_once_with_the_earlier_checkpoints_intact(
    tmp_path, monkeypatch):
  import errno  # pylint: disable=g-import-not-at-top
  import pytest  # pylint: disable=g-import-not-at-top
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  real = ocp.CheckpointManager.save

  def save(self, step, *args, **kwargs):
    if step == 4:  # The disk fills up at the second checkpoint.
      raise OSError(errno.ENOSPC, 'No space left on device')
    return real(self, step, *args, **kwargs)

  monkeypatch.setattr(ocp.CheckpointManager, 'save', save)
  run = str(tmp_path / 'run')
  with helpers.mock_binarized_mnist(64):
    with pytest.raises(trainer.CheckpointSaveError,
                       match=r'checkpoint of step 4 in .*failed \(OSError: .*No space left'):
      trainer.train_and_evaluate(_config(), run)
  assert sorted(os.listdir(os.path.join(run, 'checkpoints'))) == ['2']


def test_a_workdir_whose_checkpoints_are_gone_is_not_silently_trained_again_from_step_0(tmp_path):
  import json  # pylint: disable=g-import-not-at-top
  import pytest  # pylint: disable=g-import-not-at-top
  config = _config()
  config.train.log_every_steps = 1
  full = str(tmp_path / 'full')
  with helpers.mock_binarized_mnist(64):
    trainer.train_and_evaluate(config, full)
    reference, _ = helpers.latest_params(full)

    # Checkpoints deleted after metrics were logged at or past the first checkpoint's step.
    gone = str(tmp_path / 'gone')
    shutil.copytree(full, gone)
    shutil.rmtree(os.path.join(gone, 'checkpoints'))
    with open(os.path.join(gone, 'metrics.jsonl')) as f:
      metrics = f.read()
    with pytest.raises(ValueError, match=r'holds results of an earlier run \(metrics.jsonl up to '
                                         r'step 6\) but no checkpoint in .*gone/checkpoints'):
      trainer.train_and_evaluate(config, gone)
    with open(os.path.join(gone, 'metrics.jsonl')) as f:
      assert f.read() == metrics  # Left as it was.

    # The same with only an evaluation result left.
    os.remove(os.path.join(gone, 'metrics.jsonl'))
    with open(os.path.join(gone, 'eval_test.json'), 'w') as f:
      json.dump({'nll': 90.0, 'step': 6}, f)
    with pytest.raises(ValueError, match=r'results of an earlier run \(eval_test.json\)'):
      trainer.train_and_evaluate(config, gone)

    # A run killed before its first checkpoint (step 2) logged step 1 only: it starts again on its
    # own and ends where the uninterrupted run did.
    early = str(tmp_path / 'early')
    shutil.copytree(full, early)
    shutil.rmtree(os.path.join(early, 'checkpoints'))
    with open(os.path.join(early, 'metrics.jsonl'), 'w') as f:
      f.write(metrics.splitlines(keepends=True)[0])
    assert json.loads(metrics.splitlines()[0])['step'] == 1
    trainer.train_and_evaluate(config, early)
    params, step = helpers.latest_params(early)
  assert step == 6
  jax.tree.map(np.testing.assert_array_equal, params, reference)


def test_other_processes_never_read_a_half_written_config(tmp_path):
  # On a multi-host run process 0 writes config.json while the others check it
  # (`check_resume_config`). Here the check runs at the moment process 0 produces the file's text:
  # it must see no file (a new run) or the previous whole one (a rerun), never an empty one.
  config = helpers.tiny_config()
  workdir = str(tmp_path)
  seen = []

  class CheckedWhileWriting:
    def to_json(self, indent):
      seen.append(checkpoints.check_resume_config(config, workdir))
      return config.to_json(indent=indent)

  checkpoints.save_config(CheckedWhileWriting(), workdir)
  checkpoints.save_config(CheckedWhileWriting(), workdir)
  assert seen == [{}, {}]
  assert checkpoints.load_config(workdir) == config_lib.complete(config)
  assert os.listdir(workdir) == ['config.json']  # No temporary file left.


def test_checkpoint_every_seconds_saves_at_the_first_log_step_past_that_time(tmp_path, monkeypatch):
  """train.checkpoint_every_seconds: a checkpoint at the first log step after that many seconds
  without one (here a clock that moves 100 s per reading, 150 s apart: every other log step), on
  top of the step interval; 0 keeps only the step interval and the end. Saving more often changes
  nothing trained. A value that is not a number of seconds >= 0 is named in one line."""
  clock = iter(range(0, 10**6, 100))
  monkeypatch.setattr(trainer._TimedSaves, 'clock', staticmethod(lambda: next(clock)))  # pylint: disable=protected-access
  config = _config()
  config.train.update(num_steps=40, log_every_steps=5, checkpoint_every_steps=1000)
  with helpers.mock_binarized_mnist(64):
    config.train.checkpoint_every_seconds = 150.0
    trainer.train_and_evaluate(config, str(tmp_path / 'timed'))
    config.train.checkpoint_every_seconds = 0.0
    trainer.train_and_evaluate(config, str(tmp_path / 'off'))
    assert helpers.checkpoint_steps(str(tmp_path / 'timed')) == [10, 20, 30, 40]
    assert helpers.checkpoint_steps(str(tmp_path / 'off')) == [40]
    jax.tree.map(np.testing.assert_array_equal, helpers.latest_params(str(tmp_path / 'timed')),
                 helpers.latest_params(str(tmp_path / 'off')))
    for bad in (-1.0, float('inf'), float('nan')):
      config.train.checkpoint_every_seconds = bad
      with pytest.raises(ValueError, match=r'^train\.checkpoint_every_seconds must be a number of '
                                           r'seconds >= 0 \(0: off\), got'):
        trainer.train_and_evaluate(config, str(tmp_path / 'bad'))
  assert not os.path.exists(tmp_path / 'bad' / 'checkpoints')
