"""A SIGTERM in a host-side phase (validation, a host update, an evaluation) stops it between two
compiled calls; the trainer saves the state of the step it had reached and redoes the phase when
resumed, so that the run ends as an uninterrupted one, bit for bit."""

import json
import os
import signal

import jax
import numpy as np
import pytest

import helpers
from vaeprior_jax import checkpoints
from vaeprior_jax import interrupts
from vaeprior_jax.evaluation import estimators
from vaeprior_jax.evaluation import report
from vaeprior_jax.train import trainer


def test_check_raises_once_a_stop_is_requested_and_handling_restores_the_handlers():
  interrupts.clear()
  assert list(interrupts.checked(range(3))) == [0, 1, 2]
  before = signal.getsignal(signal.SIGTERM)
  with interrupts.handling():
    assert signal.getsignal(signal.SIGTERM) is not before
    os.kill(os.getpid(), signal.SIGTERM)  # Handled: only a request, the process goes on.
    assert interrupts.requested() == 'SIGTERM'
    seen = []
    with pytest.raises(interrupts.Interrupted) as e:
      for i in interrupts.checked(range(3)):
        seen.append(i)
    assert seen == [] and e.value.exit_code == 128 + signal.SIGTERM
  assert signal.getsignal(signal.SIGTERM) is before and interrupts.requested() == ''


def _config(num_steps):
  config = helpers.tiny_config()
  config.train.num_steps = num_steps
  config.train.early_stopping = True
  config.train.eval_every_epochs = 1.0  # 64 mock examples / batch 8: every 8 steps.
  config.train.early_stopping_num_samples = 4
  config.train.checkpoint_every_steps = 1000  # Only the last step, or a stop, saves.
  config.eval.batch_size = 8  # 8 compiled calls per validation.
  return config


def _validations(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [(r['step'], r['val_nll'], r['best_val_loss']) for r in map(json.loads, f)
            if 'val_nll' in r]


def test_a_sigterm_during_validation_saves_the_step_and_the_resumed_run_validates_it_first(
    tmp_path, monkeypatch):
  reference, stopped = str(tmp_path / 'reference'), str(tmp_path / 'stopped')
  with helpers.mock_binarized_mnist(64):
    trainer.train_and_evaluate(_config(24), reference)

    # The signal arrives after the third of the 8 batches of step 16's validation.
    original = estimators.split_batches
    calls = []

    def split_batches(batch_fn, *args, **kwargs):
      def signalled(*a):
        calls.append(1)
        if len(calls) == 8 + 3:  # Step 8's validation ran whole; then 3 batches of step 16's.
          os.kill(os.getpid(), signal.SIGTERM)
        return batch_fn(*a)
      return original(signalled, *args, **kwargs)

    monkeypatch.setattr(estimators, 'split_batches', split_batches)
    with pytest.raises(trainer.Preempted) as e:
      trainer.train_and_evaluate(_config(24), stopped)
    assert e.value.step == 16 and e.value.exit_code == 143
    assert len(calls) == 8 + 3  # It stopped at the next batch, not at the end of the validation.
    assert helpers.checkpoint_steps(stopped) == [16]  # Not due: saved because of the signal.
    assert checkpoints.read_pending_host_work(stopped, 16) == {'update': False, 'validate': True}
    assert [v[0] for v in _validations(stopped)] == [8]

    monkeypatch.setattr(estimators, 'split_batches', original)
    trainer.train_and_evaluate(_config(24), stopped)
  assert _validations(stopped) == _validations(reference)
  assert [v[0] for v in _validations(reference)] == [8, 16, 24]
  ref_params, ref_step = helpers.latest_params(reference)
  params, step = helpers.latest_params(stopped)
  assert step == ref_step == 24
  jax.tree.map(np.testing.assert_array_equal, params, ref_params)
  ref_best = checkpoints.best_checkpoint_manager(reference)
  best = checkpoints.best_checkpoint_manager(stopped)
  assert best.best_step() == ref_best.best_step()
  ref_best.close()
  best.close()


def _signal_after(monkeypatch, batches: int):
  """Makes the estimator's passes request a SIGTERM once `batches` batches have been computed."""
  original, calls = estimators.split_batches, []

  def split_batches(batch_fn, *args, **kwargs):
    def counted(*a):
      calls.append(1)
      if len(calls) == batches:
        interrupts.request('SIGTERM')
      return batch_fn(*a)
    return original(counted, *args, **kwargs)

  monkeypatch.setattr(estimators, 'split_batches', split_batches)
  return calls


def test_an_evaluation_stopped_by_a_signal_continues_to_the_same_numbers(tmp_path, monkeypatch):
  workdir = str(tmp_path)
  config = _config(8)
  config.train.early_stopping = False
  evaluate = lambda **kw: report.evaluate(workdir, 'test', active_units=False, write_images=False,
                                          batch_size=8, **dict(dict(num_samples=4), **kw))
  partial = report.result_path(workdir, 'test') + '.partial'
  with helpers.mock_binarized_mnist(64):
    trainer.train_and_evaluate(config, workdir)
    whole = evaluate()  # 64 test images: 8 batches of 8.
    os.remove(report.result_path(workdir, 'test'))
    calls = _signal_after(monkeypatch, 3)
    try:
      with pytest.raises(interrupts.Interrupted):
        evaluate()
    finally:
      interrupts.clear()
    assert len(calls) == 3  # Stopped before the 4th batch.
    assert not os.path.exists(report.result_path(workdir, 'test'))
    with open(partial) as f:
      kept = json.load(f)
    assert kept['batches'] == 3 and kept['count'] == 24 and kept['protocol']['num_samples'] == 4
    # The stopped process's time is kept and counted in eval_seconds (here made 10^6 s to see it).
    assert kept['seconds'] > 0
    with open(partial, 'w') as f:
      json.dump(dict(kept, seconds=1e6), f)
    resumed = evaluate()
    assert 1e6 < resumed['eval_seconds'] < 1e6 + 600
    assert len(calls) == 8  # Only the 5 batches left were computed.
    assert not os.path.exists(partial)
    for key in ('nll', 'elbo', 'reconstruction', 'kl', 'kl_z_given_x', 'num_examples'):
      assert resumed[key] == whole[key], key  # Bit for bit.
    # Partial sums of another protocol (here: 2 samples) are not mixed in: it starts over.
    calls.clear()
    _signal_after(monkeypatch, 3)
    try:
      with pytest.raises(interrupts.Interrupted):
        evaluate()
    finally:
      interrupts.clear()
    monkeypatch.undo()
    other = evaluate(num_samples=2)
    assert other['num_examples'] == 64 and not os.path.exists(partial)
    direct = evaluate(num_samples=2)
  assert other['nll'] == direct['nll']


def _vaepp_config():
  """A tiny VAEPP run (`tests/methods/vaepp_test.py`'s) whose log Z is refreshed, a host update,
  before each validation, after steps 2, 4 and 6 (64 mock training images, batch 8)."""
  from tests.methods import vaepp_test  # pylint: disable=g-import-not-at-top
  config = vaepp_test._config(  # pylint: disable=protected-access
      num_steps=6, latent_gan_epochs=0.0, log_z_every_epochs=0.0, early_stopping=True,
      early_stopping_num_samples=4, checkpoint_every_steps=1000, eval_every_epochs=0.25)
  config.eval.update(log_z_samples=4, log_z_max_images=16, batch_size=8)
  return config


def test_a_sigterm_during_the_last_log_z_refresh_is_redone_and_the_checkpoint_replaced(
    tmp_path, monkeypatch):
  """The signal stops the host update (log Z) of the last step: the checkpoint of that step holds
  the state before it; the resumed run refreshes log Z, validates, and replaces that checkpoint
  with the updated state, which equals the uninterrupted run's, bit for bit."""
  from vaeprior_jax.priors.pullback import normalizer  # pylint: disable=g-import-not-at-top
  reference, stopped = str(tmp_path / 'reference'), str(tmp_path / 'stopped')
  with helpers.mock_binarized_mnist(64):
    trainer.train_and_evaluate(_vaepp_config(), reference)
    original = normalizer.refresh_log_z
    calls = []

    def refresh(*args, **kwargs):
      calls.append(1)
      if len(calls) == 3:  # Step 6's.
        os.kill(os.getpid(), signal.SIGTERM)
      return original(*args, **kwargs)

    monkeypatch.setattr(normalizer, 'refresh_log_z', refresh)
    with pytest.raises(trainer.Preempted) as e:
      trainer.train_and_evaluate(_vaepp_config(), stopped)
    assert e.value.step == 6 and len(calls) == 3
    assert helpers.checkpoint_steps(stopped) == [6]
    assert checkpoints.read_pending_host_work(stopped, 6) == {'update': True, 'validate': True}
    monkeypatch.setattr(normalizer, 'refresh_log_z', original)
    trainer.train_and_evaluate(_vaepp_config(), stopped)
    assert helpers.checkpoint_steps(stopped) == [6]
    config = _vaepp_config()
    states = []
    for workdir in (reference, stopped):
      from vaeprior_jax import models  # pylint: disable=g-import-not-at-top
      model = models.create(config.model, (28, 28, 1))
      manager = checkpoints.checkpoint_manager(workdir)
      states.append(jax.device_get(checkpoints.restore_state(
          manager, trainer.abstract_train_state(model, config, (28, 28, 1)), 6)))
      manager.close()
  jax.tree.map(np.testing.assert_array_equal, states[1], states[0])
  assert abs(float(states[0]['model_state']['partition']['prior']['log_z'])) > 1e-3
  assert _validations(stopped) == _validations(reference)
  assert [v[0] for v in _validations(reference)] == [2, 4, 6]


def test_a_log_z_refresh_stopped_by_a_signal_continues_to_the_same_numbers(tmp_path, monkeypatch):
  """`experiments.evaluate` of a pull-back prior run: its log Z estimate (hours at the paper's
  protocol) keeps its per-image outputs; stopped after one of its two batches, the rerun computes
  only the other and reports the uninterrupted log Z and NLL, bit for bit."""
  workdir = str(tmp_path)
  config = _vaepp_config()
  config.train.update(num_steps=2, early_stopping=False)
  evaluate = lambda: report.evaluate(workdir, 'test', num_samples=2, max_examples=16,
                                     active_units=False, write_images=False, batch_size=8)
  partial = os.path.join(workdir, 'log_z.partial.npz')
  with helpers.mock_binarized_mnist(64):
    trainer.train_and_evaluate(config, workdir)
    whole = evaluate()
    calls = _signal_after(monkeypatch, 1)  # The first of the refresh's 2 batches (16 images).
    try:
      with pytest.raises(interrupts.Interrupted):
        evaluate()
    finally:
      interrupts.clear()
    assert len(calls) == 1 and os.path.exists(partial)
    resumed = evaluate()
  assert len(calls) == 1 + 1 + 2  # The refresh's second batch, then the NLL's two.
  assert not os.path.exists(partial)
  for key in ('log_z', 'log_z_stderr', 'nll', 'elbo'):
    assert resumed[key] == whole[key], key


def test_an_evaluation_stopped_after_its_likelihood_does_not_redo_it(tmp_path, monkeypatch):
  """`experiments.evaluate` of a pull-back prior run stopped after its likelihood (here in the
  prior-based log Z check that follows): the log Z refresh and the likelihood stay kept, whole;
  the rerun computes neither again and reports the same numbers; the files go once it is done."""
  from vaeprior_jax.priors.pullback import normalizer  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path)
  config = _vaepp_config()
  config.train.update(num_steps=2, early_stopping=False)
  evaluate = lambda: report.evaluate(workdir, 'test', num_samples=2, max_examples=16,
                                     active_units=False, write_images=False, batch_size=8)
  kept = [os.path.join(workdir, 'log_z.partial.npz'),
          report.result_path(workdir, 'test', 16) + '.partial']
  with helpers.mock_binarized_mnist(64):
    trainer.train_and_evaluate(config, workdir)
    whole = evaluate()
    assert not any(os.path.exists(p) for p in kept)
    original, checks = normalizer.prior_log_z, []

    def prior_log_z(*args, **kwargs):
      checks.append(1)
      if len(checks) == 1:
        interrupts.request('SIGTERM')
        interrupts.check()
      return original(*args, **kwargs)

    monkeypatch.setattr(normalizer, 'prior_log_z', prior_log_z)
    calls = _signal_after(monkeypatch, 10**6)  # Counts the batches of both passes.
    try:
      with pytest.raises(interrupts.Interrupted):
        evaluate()
    finally:
      interrupts.clear()
    assert len(calls) == 2 + 2 and all(os.path.exists(p) for p in kept)
    resumed = evaluate()
  assert len(calls) == 4 and len(checks) == 2  # No batch again; the check is redone.
  assert not any(os.path.exists(p) for p in kept)
  for key in ('log_z', 'log_z_stderr', 'nll', 'elbo', 'log_z_prior'):
    assert resumed[key] == whole[key], key


def test_active_units_stopped_by_a_signal_go_on_from_the_means_kept(tmp_path, monkeypatch):
  """The active-units pass keeps its posterior means as they come: stopped after 2 of its 8
  batches, the rerun (of the whole evaluation: the finished likelihood is kept too) computes only
  the 6 left, and counts the same active units from the same means."""
  workdir = str(tmp_path)
  config = _config(8)
  config.train.early_stopping = False
  config.eval.update(active_units_batch_size=8, active_units_samples=4)
  evaluate = lambda: report.evaluate(workdir, 'test', num_samples=2, max_examples=16,
                                     write_images=False, batch_size=8)
  partial = os.path.join(workdir, 'active_units.partial.npz')
  parts, stop_at = helpers.count_kept_parts(monkeypatch, 'active_units.partial.npz')
  with helpers.mock_binarized_mnist(64):
    trainer.train_and_evaluate(config, workdir)
    whole = evaluate()
    assert len(parts) == 8 and not os.path.exists(partial)  # 64 training images, 8 per batch.
    parts.clear()
    stop_at[:] = [2]
    try:
      with pytest.raises(interrupts.Interrupted):
        evaluate()
    finally:
      interrupts.clear()
    with np.load(partial) as kept:
      assert int(kept['__batches__']) == 2 and kept['means'].shape[0] == 16
    parts.clear()
    stop_at.clear()
    resumed = evaluate()
  assert len(parts) == 6 and not os.path.exists(partial)
  assert resumed['active_units'] == whole['active_units'] and resumed['nll'] == whole['nll']


def test_split_outputs_continue_only_under_the_same_protocol(tmp_path, monkeypatch):
  from vaeprior_jax import sharding  # pylint: disable=g-import-not-at-top
  mesh = sharding.make_mesh()
  images = np.random.default_rng(0).random((40, 2, 2, 1)).astype(np.float32)
  fn = jax.jit(lambda p, x, k: {'v': p * x.sum(axis=(1, 2, 3)) + jax.random.uniform(k, x.shape[:1])})
  path = str(tmp_path / 'out.partial.npz')
  run = lambda p, protocol: estimators.split_outputs(fn, p, images, jax.random.key(0), mesh, 8,
                                                     partial_file=path, protocol=protocol)
  whole = run(1.0, {'p': 1})['v']
  assert not os.path.exists(path) and whole.shape == (40,)
  calls = _signal_after(monkeypatch, 2)
  try:
    with pytest.raises(interrupts.Interrupted):
      run(1.0, {'p': 1})
  finally:
    interrupts.clear()
  with np.load(path) as kept:
    assert int(kept['__batches__']) == 2 and kept['v'].shape == (16,)
  np.testing.assert_array_equal(run(1.0, {'p': 1})['v'], whole)
  assert len(calls) == 5  # 2, then the 3 left.
  # Kept outputs of another protocol are not mixed in.
  calls.clear()
  try:
    with pytest.raises(interrupts.Interrupted):
      run(1.0, {'p': 1})
  finally:
    interrupts.clear()
  monkeypatch.undo()
  other = run(2.0, {'p': 2})['v']
  np.testing.assert_array_equal(other, estimators.split_outputs(
      fn, 2.0, images, jax.random.key(0), mesh, 8)['v'])



def _labelled_arrays_run(tmp_path, seed: int):
  """(workdir, classifier folder) of a 4-step run on your own labelled 8x8 arrays (random, from
  `seed`): a sample-quality report with a fast classifier distance."""
  rng = np.random.default_rng(seed)
  x = rng.integers(0, 256, (72, 8, 8, 1), dtype=np.uint8)
  y = rng.integers(0, 3, 72)
  path = str(tmp_path / 'mine.npz')
  np.savez(path, x_train=x[:56], y_train=y[:56], x_test=x[56:], y_test=y[56:])
  config = helpers.tiny_config()
  config.data.update(dataset='arrays', path=path)
  config.train.num_steps = 4
  workdir, classifier_dir = str(tmp_path / 'run'), str(tmp_path / 'classifier')
  trainer.train_and_evaluate(config, workdir)
  return workdir, classifier_dir


def test_a_sample_quality_report_stopped_by_a_signal_goes_on_from_the_kinds_done(tmp_path,
                                                                               monkeypatch):
  """Your own labelled arrays (a fast classifier distance): the report stopped while making its
  reconstructions keeps the samples' distances; the rerun computes the rest only and returns the
  uninterrupted report."""
  workdir, classifier_dir = _labelled_arrays_run(tmp_path, seed=0)
  quality = lambda: report.sample_quality(workdir, classifier_dir, num_images=8, classifier_steps=3,
                                          bootstrap=2)
  whole = quality()
  original, calls = report._generated, []  # pylint: disable=protected-access

  def generated(model, params, kind, *args, **kwargs):
    calls.append(kind)
    if kind == 'reconstructions' and calls.count(kind) == 1:  # The first time only.
      interrupts.request('SIGTERM')
    return original(model, params, kind, *args, **kwargs)

  monkeypatch.setattr(report, '_generated', generated)
  try:
    with pytest.raises(interrupts.Interrupted):
      quality()
  finally:
    interrupts.clear()
  partial = os.path.join(workdir, 'sample_quality_two_stage.partial.json')
  with open(partial) as f:
    assert json.load(f)['kinds'] == ['samples']
  resumed = quality()
  assert calls == ['samples', 'reconstructions', 'reconstructions'] and not os.path.exists(partial)
  assert json.loads(json.dumps(resumed)) == json.loads(json.dumps(whole))


def test_a_sample_quality_kind_stopped_by_a_signal_goes_on_from_its_features_kept(tmp_path,
                                                                                monkeypatch):
  """Within a kind, the features are kept a part at a time (3 images here): stopped after the
  first part of the samples' features, the rerun computes the other two parts only and returns the
  uninterrupted report."""
  from vaeprior_jax.evaluation.sample_quality import classifier_distance  # pylint: disable=g-import-not-at-top
  workdir, classifier_dir = _labelled_arrays_run(tmp_path, seed=1)
  monkeypatch.setattr(report, 'FEATURE_PART', 3)
  quality = lambda: report.sample_quality(workdir, classifier_dir, num_images=8, classifier_steps=3,
                                          bootstrap=2)
  original, sizes, stop_at = classifier_distance.features, [], []

  def features(params, num_classes, images):
    sizes.append(len(images))
    if len(sizes) in stop_at:
      interrupts.request('SIGTERM')
    return original(params, num_classes, images)

  monkeypatch.setattr(classifier_distance, 'features', features)
  whole = quality()
  uninterrupted, stop_at[:] = list(sizes), [3]  # The reference's, then the samples' in parts.
  assert uninterrupted[1:4] == [3, 3, 2]
  sizes.clear()
  try:
    with pytest.raises(interrupts.Interrupted):
      quality()
  finally:
    interrupts.clear()
  partial = os.path.join(workdir, 'sample_quality_two_stage.samples.cfd.partial.npz')
  with np.load(partial) as kept:
    assert int(kept['__batches__']) == 1 and kept['features'].shape == (3, 128)
  sizes.clear()
  stop_at.clear()
  resumed = quality()
  # The reference again, the samples' last two parts, then every other kind as before.
  assert sizes == uninterrupted[:1] + uninterrupted[2:] and not os.path.exists(partial)
  assert json.loads(json.dumps(resumed)) == json.loads(json.dumps(whole))
