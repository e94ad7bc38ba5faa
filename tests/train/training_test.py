"""The train step over a device mesh, schedules, and stopping on a non-finite loss."""

import json
import os
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import helpers
from vaeprior_jax import checkpoints
from vaeprior_jax import data
from vaeprior_jax.evaluation import report
from vaeprior_jax import methods
from vaeprior_jax import models
from vaeprior_jax import sharding
from vaeprior_jax.train import trainer


def _run_steps(config, mesh, batches, model, num_steps=3, optimizer=None):
  optimizer = optimizer or methods.joint.make_optimizer(config.train, steps_per_epoch=10)
  replicated = sharding.replicated(mesh)
  state = jax.jit(lambda b, k: trainer.create_train_state(model, optimizer, b, k),
                  out_shardings=replicated)(batches[0], jax.random.key(0))
  step = trainer.compile_train_step(
      trainer.make_train_step(model, optimizer, config.train, steps_per_epoch=10), mesh)
  metrics = None
  for i in range(num_steps):
    state, metrics = step(state, sharding.shard_batch(batches[i], mesh), jax.random.key(1))
  return jax.device_get(state), jax.device_get(metrics)


@pytest.mark.parametrize('net', ['dense', 'conv'])
def test_four_devices_match_one_device(net):
  assert jax.device_count() == 4, 'conftest simulates 4 CPU devices'
  config = helpers.tiny_config(net=net, prior='realnvp')
  model = models.create(config.model, (28, 28, 1))
  batches = [np.asarray(jax.random.uniform(jax.random.key(i), (8, 28, 28, 1)) > 0.5, np.float32)
             for i in range(3)]
  # Plain SGD: a parameter moves by lr x its gradient, so the reduction-order noise of the sharded
  # sums stays at rounding level (Adam's first steps move every parameter by about lr, whatever the
  # gradient: a near-zero gradient whose sign flips with the summation order moves it by 2 lr).
  sgd = trainer.optax.sgd(1e-4)
  state_4, metrics_4 = _run_steps(config, sharding.make_mesh(jax.devices()), batches, model,
                                  optimizer=sgd)
  state_1, metrics_1 = _run_steps(config, sharding.make_mesh(jax.devices()[:1]), batches, model,
                                  optimizer=sgd)
  assert int(state_4['step']) == 3
  assert all(np.all(np.isfinite(p)) for p in jax.tree.leaves(state_4['params']))
  np.testing.assert_allclose(metrics_4['loss'], metrics_1['loss'], rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
               state_4['params'], state_1['params'])
  # The steps did train: parameters moved, by much more than the tolerance above.
  state_0, _ = _run_steps(config, sharding.make_mesh(jax.devices()[:1]), batches, model, 0, sgd)
  moved = jax.tree.map(lambda a, b: float(np.max(np.abs(a - b))), state_1['params'],
                       state_0['params'])
  assert max(jax.tree.leaves(moved)) > 1e-4


def test_batch_must_divide_over_devices(tmp_path):
  config = helpers.tiny_config()
  config.train.batch_size = 6
  with pytest.raises(ValueError, match='batch_size 6 must be divisible by the number of devices'):
    trainer.train_and_evaluate(config, str(tmp_path))


def test_schedules():
  config = helpers.tiny_config()
  tc = config.train
  tc.warmup_epochs, tc.beta_start = 2.0, 0.01
  beta = methods.joint.beta_schedule(tc, steps_per_epoch=10)
  np.testing.assert_allclose([beta(jnp.asarray(s)) for s in (0, 10, 20, 50)],
                             [0.01, 0.505, 1.0, 1.0], rtol=1e-6)
  tc.learning_rate, tc.lr_decay_epochs, tc.lr_decay_factor = 1e-3, (2, 3), 0.1
  lr = methods.joint.learning_rate_schedule(tc, steps_per_epoch=10)
  np.testing.assert_allclose([lr(s) for s in (0, 19, 20, 29, 30)],
                             [1e-3, 1e-3, 1e-4, 1e-4, 1e-5], rtol=1e-5)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
  config = helpers.tiny_config()
  config.train.num_steps = 40
  config.train.checkpoint_every_steps = 10
  # 64 mock examples / batch 8 = 8 steps per epoch: from step 16 the learning rate is 1e27, which
  # blows the parameters up, so the loss of step 17 is no longer finite.
  config.train.lr_decay_epochs = (2,)
  config.train.lr_decay_factor = 1e30
  workdir = str(tmp_path)
  with helpers.mock_binarized_mnist(64):
    with pytest.raises(FloatingPointError, match=r'Non-finite loss -?(nan|inf) at step 17.*step 10'):
      trainer.train_and_evaluate(config, workdir)
    manager = checkpoints.checkpoint_manager(workdir)
    assert manager.all_steps() == [10]
    manager.close()
    model = models.create(config.model, (28, 28, 1))
    params, step = report.restore_params(workdir, config, model, (28, 28, 1))
  assert step == 10
  assert all(np.all(np.isfinite(p)) for p in jax.tree.leaves(params))
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    assert [json.loads(l)['step'] for l in f] == [5, 10, 15]


def test_a_checkpoint_at_the_non_finite_step_is_not_called_good(tmp_path):
  config = helpers.tiny_config()
  config.train.num_steps = 40
  config.train.checkpoint_every_steps = 1  # The state of step 17 is saved before its loss is known.
  config.train.max_checkpoints_to_keep = 3
  config.train.lr_decay_epochs = (2,)
  config.train.lr_decay_factor = 1e30
  with helpers.mock_binarized_mnist(64):
    with pytest.raises(FloatingPointError, match=r'at step 17\. Training stopped; the last good '
                       r'checkpoint \(step 16\).*the checkpoint of step 17 holds the state'):
      trainer.train_and_evaluate(config, str(tmp_path))
  config.train.checkpoint_every_steps = 1000
  with helpers.mock_binarized_mnist(64):
    with pytest.raises(FloatingPointError, match='at step 17. Training stopped; no checkpoint '
                                                 'before it was saved'):
      trainer.train_and_evaluate(config, str(tmp_path / 'none'))


_REAL_SPLIT_METRICS = trainer.estimators.split_metrics


def _scripted_validation(monkeypatch, nlls):
  """Replaces the validation NLL by a script: call i returns nlls[i] (real split_metrics otherwise)."""
  calls = []

  def fake(*args, **kwargs):
    m = _REAL_SPLIT_METRICS(*args, **kwargs)
    m['nll'] = nlls[len(calls)]
    calls.append(m['nll'])
    return m

  monkeypatch.setattr(trainer.estimators, 'split_metrics', fake)
  return calls


def _early_stopping_config(num_steps):
  config = helpers.tiny_config()
  config.train.num_steps = num_steps
  config.train.early_stopping = True
  config.train.eval_every_epochs = 1.0  # 64 mock examples / batch 8: every 8 steps.
  config.train.early_stopping_patience_epochs = 2.0
  config.train.checkpoint_every_steps = 8
  return config


def test_early_stopping_keeps_the_best_state_and_stops_after_patience(tmp_path, monkeypatch):
  workdir = str(tmp_path)
  calls = _scripted_validation(monkeypatch, [5.0, 3.0, 4.0, 6.0, 1.0])
  with helpers.mock_binarized_mnist(64):
    trainer.train_and_evaluate(_early_stopping_config(80), workdir)
    assert calls == [5.0, 3.0, 4.0, 6.0]  # Steps 8, 16, 24, 32: no better NLL for 16 steps -> stop.
    model = models.create(helpers.tiny_config().model, (28, 28, 1))
    config = checkpoints.load_config(workdir)
    best, best_step = report.restore_params(workdir, config, model, (28, 28, 1), 'best')
    auto, auto_step = report.restore_params(workdir, config, model, (28, 28, 1), 'auto')
    latest, latest_step = report.restore_params(workdir, config, model, (28, 28, 1), 'latest')
  assert best_step == auto_step == 16 and latest_step == 32
  jax.tree.map(np.testing.assert_array_equal, auto, best)
  assert not np.allclose(best['decoder']['logits']['kernel'], latest['decoder']['logits']['kernel'])
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    val = [(l['step'], l['val_nll'], l['best_val_nll']) for l in map(json.loads, f) if 'val_nll' in l]
  assert val == [(8, 5.0, 5.0), (16, 3.0, 3.0), (24, 4.0, 3.0), (32, 6.0, 3.0)]


def test_a_resumed_run_takes_the_same_early_stopping_decisions(tmp_path, monkeypatch):
  workdir = str(tmp_path)
  _scripted_validation(monkeypatch, [5.0, 3.0, 4.0])
  with helpers.mock_binarized_mnist(64):
    trainer.train_and_evaluate(_early_stopping_config(24), workdir)  # Stops at the budget, step 24.
    calls = _scripted_validation(monkeypatch, [6.0, 1.0])
    trainer.train_and_evaluate(_early_stopping_config(80), workdir)  # Resumes at 24, best is 3.0@16.
  assert calls == [6.0]
  manager = checkpoints.checkpoint_manager(workdir)
  assert manager.latest_step() == 32
  manager.close()
  best = checkpoints.best_checkpoint_manager(workdir)
  assert best.best_step() == 16 and best.metrics(16)['val_nll'] == 3.0
  best.close()


def test_dynamically_binarized_mnist_trains_and_evaluates(tmp_path):
  config = _early_stopping_config(12)
  config.data.dataset = 'mnist'
  config.data.validation_size = 16  # 64 mock images: 48 to train on (6 steps per epoch).
  workdir = str(tmp_path)
  with helpers.mock_tfds(64):
    last = trainer.train_and_evaluate(config, workdir)
    result = report.evaluate(workdir, 'test', num_samples=4, max_examples=30, active_units=False,
                               write_images=False)
  assert np.isfinite(last['loss']) and last['epoch'] == 2.0
  assert result['checkpoint'] == 'best' and result['num_examples'] == 30
  assert result['step'] in (6, 12) and np.isfinite(result['nll'])


def test_active_units_are_the_encoder_means_variance_count_whatever_the_pass_batch_size(tmp_path):
  """evaluate's active units against the definition applied to the encoder's means of every training
  image at once (the RNVP posterior's mean has no closed form: the standard Gaussian's is exact)."""
  config = helpers.tiny_config()
  config.train.num_steps = 8
  workdir = str(tmp_path / 'run')
  with helpers.mock_binarized_mnist(64):
    trainer.train_and_evaluate(config, workdir)
    dataset = data.load(config.data)
    counts = {}
    config_path = os.path.join(workdir, 'config.json')
    for au_batch_size in (0, 12, 1000):  # the NLL's batch (8), uneven batches, one batch
      with open(config_path) as f:
        saved = json.load(f)
      saved['eval']['active_units_batch_size'] = au_batch_size
      with open(config_path, 'w') as f:
        json.dump(saved, f)
      counts[au_batch_size] = report.evaluate(workdir, 'test', num_samples=2, max_examples=8,
                                                write_images=False)['active_units']
  params, _ = helpers.latest_params(workdir)
  model = models.create(config.model, dataset.input_shape)
  means, _ = model.apply(models.as_variables(params), dataset.eval_images('train'),
                         method=lambda m, x: m.encoder(x))
  variances = np.var(np.asarray(means, np.float64), axis=0)
  expected = int(np.sum(variances > 0.01))
  assert counts == {0: expected, 12: expected, 1000: expected}, (counts, variances)


def test_evaluate_rejects_a_bad_active_units_batch_size(tmp_path):
  config = helpers.tiny_config()
  config.train.num_steps = 2
  config.eval.active_units_batch_size = -5
  workdir = str(tmp_path)
  message = r'eval.active_units_batch_size must be an integer >= 0 \(0: eval.batch_size\), got -5'
  with helpers.mock_binarized_mnist(16):
    with pytest.raises(ValueError, match=message):  # At the start of training ...
      trainer.train_and_evaluate(config, workdir)
    assert not os.path.exists(os.path.join(workdir, 'config.json'))
    config.eval.active_units_batch_size = 0
    trainer.train_and_evaluate(config, workdir)
    saved = checkpoints.load_config(workdir)  # ... and of an evaluation (a config.json edited).
    saved.eval.active_units_batch_size = -5
    checkpoints.save_config(saved, workdir)
    with pytest.raises(ValueError, match=message):
      report.evaluate(workdir, 'test', num_samples=2, max_examples=8, write_images=False)


def test_normalized_gradient_adam_is_adam_on_unit_norm_gradients():
  config = helpers.tiny_config()
  config.train.normalize_gradients = True
  optimizer = methods.joint.make_optimizer(config.train, steps_per_epoch=10)
  reference = trainer.optax.adam(methods.joint.learning_rate_schedule(config.train, 10))
  params = {'a': jnp.ones((3, 2)), 'b': jnp.zeros((4,))}
  state, ref_state = optimizer.init(params), reference.init(params)
  for i in range(3):
    grads = {'a': jax.random.normal(jax.random.key(i), (3, 2)) * 10.0 ** i,
             'b': jax.random.normal(jax.random.key(10 + i), (4,)) * 1e-3}
    unit = jax.tree.map(lambda g: g / (jnp.linalg.norm(g.ravel()) + 1e-7), grads)
    updates, state = optimizer.update(grads, state, params, step=i)  # The rate at step i.
    expected, ref_state = reference.update(unit, ref_state, params)
    jax.tree.map(lambda u, e: np.testing.assert_allclose(u, e, rtol=1e-5, atol=1e-9), updates,
                 expected)


def _scripted_elbos(monkeypatch, elbos):
  calls = []

  def fake(*args, **kwargs):
    m = _REAL_SPLIT_METRICS(*args, **kwargs)
    m['elbo'] = elbos[len(calls)]
    calls.append(m['elbo'])
    return m

  monkeypatch.setattr(trainer.estimators, 'split_metrics', fake)
  return calls


def test_early_stopping_on_the_elbo_counts_its_patience_from_the_end_of_the_warm_up(tmp_path,
                                                                                 monkeypatch):
  config = _early_stopping_config(80)
  config.train.early_stopping_metric = 'elbo'
  config.train.early_stopping_num_samples = 1
  config.train.warmup_epochs = 2.0  # 16 steps
  config.train.early_stopping_patience_epochs = 1.0  # 8 steps
  workdir = str(tmp_path)
  calls = _scripted_elbos(monkeypatch, [-5.0, -6.0, -7.0, -1.0])
  with helpers.mock_binarized_mnist(64):
    trainer.train_and_evaluate(config, workdir)
  # Best at step 8; 8 steps later the warm-up is just over (step 16): the look-ahead starts there,
  # so training stops at step 24, not 16.
  assert calls == [-5.0, -6.0, -7.0]
  manager = checkpoints.checkpoint_manager(workdir)
  assert manager.latest_step() == 24
  manager.close()
  best = checkpoints.best_checkpoint_manager(workdir)
  assert best.best_step() == 8 and best.metrics(8)['val_loss'] == 5.0
  best.close()
  config.train.early_stopping_metric = 'bpd'
  with pytest.raises(ValueError, match="Unknown train.early_stopping_metric 'bpd'; allowed: nll"):
    trainer.EarlyStopping(config, workdir, None, 8, None, None, jax.random.key(0))


def test_evaluation_runs_a_chunk_the_memory_budget_allows_with_the_same_estimate(tmp_path):
  """A budget smaller than the configured chunk needs: `evaluate` runs with a smaller chunk, and the
  NLL is the same (sample j uses the j-th key whatever the chunk) up to float32 rounding."""
  config = helpers.tiny_config()
  config.train.num_steps = 4
  workdir = str(tmp_path)
  with helpers.mock_binarized_mnist(64):
    trainer.train_and_evaluate(config, workdir)
    whole = report.evaluate(workdir, max_examples=8, active_units=False, write_images=False)
    saved = checkpoints.load_config(workdir)
    saved.eval.memory_budget_gb = 1e-6  # ~1 kB: only a chunk of 1 sample is left.
    checkpoints.save_config(saved, workdir)
    with mock.patch.object(trainer.estimators, 'make_batch_metrics',
                           wraps=trainer.estimators.make_batch_metrics) as made:
      bounded = report.evaluate(workdir, max_examples=8, active_units=False, write_images=False)
  assert config.eval.chunk_size == 4 and made.call_args.args[2] == 1
  assert bounded['nll'] == pytest.approx(whole['nll'], abs=1e-4)
  assert bounded['elbo'] == pytest.approx(whole['elbo'], abs=1e-4)


def test_an_unknown_dataset_is_named_in_one_line_before_anything_is_loaded(tmp_path):
  config = helpers.tiny_config()
  config.data.dataset = 'foo'
  with pytest.raises(ValueError, match="^Unknown data.dataset 'foo'; allowed: binarized_mnist, "):
    trainer.train_and_evaluate(config, str(tmp_path))
  assert os.listdir(tmp_path) == []  # Nothing written, nothing loaded.
