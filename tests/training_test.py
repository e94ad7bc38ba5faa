"""The train step over a device mesh, schedules, and stopping on a non-finite loss."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import helpers
from vaeprior_jax import evaluate
from vaeprior_jax import models
from vaeprior_jax import sharding
from vaeprior_jax import training


def _run_steps(config, mesh, batches, model, num_steps=3):
  optimizer = training.make_optimizer(config.train, steps_per_epoch=10)
  replicated = sharding.replicated(mesh)
  state = jax.jit(lambda b, k: training.create_train_state(model, optimizer, b, k),
                  out_shardings=replicated)(batches[0], jax.random.key(0))
  step = training.compile_train_step(
      training.make_train_step(model, optimizer, config.train, steps_per_epoch=10), mesh)
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
  state_4, metrics_4 = _run_steps(config, sharding.make_mesh(jax.devices()), batches, model)
  state_1, metrics_1 = _run_steps(config, sharding.make_mesh(jax.devices()[:1]), batches, model)
  assert int(state_4['step']) == 3
  np.testing.assert_allclose(metrics_4['loss'], metrics_1['loss'], rtol=1e-5)
  # Adam divides by sqrt(v): a tiny gradient's reduction-order noise can move it by ~1e-5, while
  # a wrongly sharded step would move parameters by ~lr = 1e-3.
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=5e-5),
               state_4['params'], state_1['params'])
  # The steps did train: parameters moved.
  state_0, _ = _run_steps(config, sharding.make_mesh(jax.devices()[:1]), batches, model, 0)
  moved = jax.tree.map(lambda a, b: float(np.max(np.abs(a - b))), state_1['params'],
                       state_0['params'])
  assert max(jax.tree.leaves(moved)) > 1e-4


def test_batch_must_divide_over_devices(tmp_path):
  config = helpers.tiny_config()
  config.train.batch_size = 6
  with pytest.raises(ValueError, match='batch_size 6 must be divisible by the number of devices'):
    training.train_and_evaluate(config, str(tmp_path))


def test_schedules():
  config = helpers.tiny_config()
  tc = config.train
  tc.warmup_epochs, tc.beta_start = 2.0, 0.01
  beta = training.beta_schedule(tc, steps_per_epoch=10)
  np.testing.assert_allclose([beta(jnp.asarray(s)) for s in (0, 10, 20, 50)],
                             [0.01, 0.505, 1.0, 1.0], rtol=1e-6)
  tc.learning_rate, tc.lr_decay_epochs, tc.lr_decay_factor = 1e-3, (2, 3), 0.1
  lr = training.learning_rate_schedule(tc, steps_per_epoch=10)
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
      training.train_and_evaluate(config, workdir)
    manager = training.checkpoint_manager(workdir)
    assert manager.all_steps() == [10]
    manager.close()
    model = models.create(config.model, (28, 28, 1))
    params, step = evaluate.restore_params(workdir, config, model, (28, 28, 1))
  assert step == 10
  assert all(np.all(np.isfinite(p)) for p in jax.tree.leaves(params))
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    assert [json.loads(l)['step'] for l in f] == [5, 10, 15]


_REAL_SPLIT_METRICS = training.evaluation.split_metrics


def _scripted_validation(monkeypatch, nlls):
  """Replaces the validation NLL by a script: call i returns nlls[i] (real split_metrics otherwise)."""
  calls = []

  def fake(*args, **kwargs):
    m = _REAL_SPLIT_METRICS(*args, **kwargs)
    m['nll'] = nlls[len(calls)]
    calls.append(m['nll'])
    return m

  monkeypatch.setattr(training.evaluation, 'split_metrics', fake)
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
    training.train_and_evaluate(_early_stopping_config(80), workdir)
    assert calls == [5.0, 3.0, 4.0, 6.0]  # Steps 8, 16, 24, 32: no better NLL for 16 steps -> stop.
    model = models.create(helpers.tiny_config().model, (28, 28, 1))
    config = training.load_config(workdir)
    best, best_step = evaluate.restore_params(workdir, config, model, (28, 28, 1), 'best')
    auto, auto_step = evaluate.restore_params(workdir, config, model, (28, 28, 1), 'auto')
    latest, latest_step = evaluate.restore_params(workdir, config, model, (28, 28, 1), 'latest')
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
    training.train_and_evaluate(_early_stopping_config(24), workdir)  # Stops at the budget, step 24.
    calls = _scripted_validation(monkeypatch, [6.0, 1.0])
    training.train_and_evaluate(_early_stopping_config(80), workdir)  # Resumes at 24, best is 3.0@16.
  assert calls == [6.0]
  manager = training.checkpoint_manager(workdir)
  assert manager.latest_step() == 32
  manager.close()
  best = training.best_checkpoint_manager(workdir)
  assert best.best_step() == 16 and best.metrics(16)['val_nll'] == 3.0
  best.close()


def test_dynamically_binarized_mnist_trains_and_evaluates(tmp_path):
  config = _early_stopping_config(12)
  config.data.dataset = 'mnist'
  config.data.validation_size = 16  # 64 mock images: 48 to train on (6 steps per epoch).
  workdir = str(tmp_path)
  with helpers.mock_tfds(64):
    last = training.train_and_evaluate(config, workdir)
    result = evaluate.evaluate(workdir, 'test', num_samples=4, max_examples=30, active_units=False,
                               write_images=False)
  assert np.isfinite(last['loss']) and last['epoch'] == 2.0
  assert result['checkpoint'] == 'best' and result['num_examples'] == 30
  assert result['step'] in (6, 12) and np.isfinite(result['nll'])
