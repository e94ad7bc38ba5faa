"""User code extends the library without editing it: the prior, net and method of
tests/user_extension.py plug into `models.create`, `trainer.train_and_evaluate`, `evaluate` and the
binaries by name."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

import helpers
import user_extension
from vaeprior_jax import checkpoints
from vaeprior_jax.evaluation import report
from vaeprior_jax import models
from vaeprior_jax import priors
from vaeprior_jax.train import trainer

SHAPE = (28, 28, 1)
ROOT = helpers.ROOT


def _config(num_steps=4):
  config = helpers.tiny_config(net='user_counting_dense', prior='user_shifted_normal')
  config.train.method = 'user_warm_then_freeze'
  config.train.num_steps = num_steps
  config.train.checkpoint_every_steps = 2
  config.train.log_every_steps = 2
  config.train.max_checkpoints_to_keep = 10
  return config


def test_a_user_prior_gets_the_models_context_and_has_its_density():
  config = _config()
  model = models.create(config.model, SHAPE)
  assert isinstance(model.prior, user_extension.ShiftedNormalPrior)
  x = np.asarray(jax.random.uniform(jax.random.key(0), (4,) + SHAPE) > 0.5, np.float32)
  variables = model.init(jax.random.key(1), x, jax.random.key(2))
  shift = np.linspace(-1.0, 2.0, config.model.latent_dim).astype(np.float32)
  params = dict(variables['params'], prior={'shift': jnp.asarray(shift)})
  z = np.random.default_rng(0).normal(size=(5, config.model.latent_dim)).astype(np.float32)
  user_extension.SEEN_CONTEXTS.clear()
  log_pz = model.apply({'params': params, 'batch_stats': variables['batch_stats']}, z,
                       method=model.prior_log_prob)
  expected = scipy.stats.multivariate_normal(shift, np.eye(len(shift))).logpdf(z)
  np.testing.assert_allclose(log_pz, expected, rtol=1e-5)
  ctx = user_extension.SEEN_CONTEXTS[-1]
  assert isinstance(ctx, priors.PriorContext) and ctx.encoder is not None
  assert ctx.decode_mean is not None


def _state(workdir, config):
  """The whole train state of the latest checkpoint, on the host."""
  model = models.create(config.model, SHAPE)
  manager = checkpoints.checkpoint_manager(workdir)
  state = checkpoints.restore_state(manager, trainer.abstract_train_state(model, config, SHAPE))
  manager.close()
  return jax.device_get(state)


def _equal(a, b):
  la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
  return len(la) == len(lb) and all(np.array_equal(x, y) for x, y in zip(la, lb))


def test_user_prior_net_and_method_train_resume_exactly_and_evaluate(tmp_path):
  config, full = _config(), str(tmp_path / 'full')
  with helpers.mock_binarized_mnist(64):
    last = trainer.train_and_evaluate(config, full)
    final, at_2 = _state(full, config), None
    resumed = str(tmp_path / 'resumed')
    helpers.copy_until(full, resumed, 2)
    at_2 = _state(resumed, config)
    trainer.train_and_evaluate(config, resumed)
    again = _state(resumed, config)
    result = report.evaluate(full, 'test', num_samples=4, max_examples=16, active_units=False,
                               write_images=False)
    other = _config(num_steps=6)
    other.train.method = 'joint'  # Another method: refused before anything is written.
    with open(os.path.join(resumed, 'config.json')) as f:
      saved = f.read()
    with pytest.raises(ValueError, match=r"holds a run of another model, data or method "
                                         r"\(train.method: '\w+' -> 'joint'\)"):
      trainer.train_and_evaluate(other, resumed)
    with open(os.path.join(resumed, 'config.json')) as f:
      assert f.read() == saved
    # A larger budget is a change a rerun may make: allowed, and recorded.
    trainer.train_and_evaluate(_config(num_steps=5), resumed)
    with open(os.path.join(resumed, 'config_changes.jsonl')) as f:
      assert json.loads(f.readline())['changes'] == {'train.num_steps': [4, 5]}
  assert np.isfinite(last['loss']) and np.isfinite(result['nll'])
  assert int(final['step']) == 4 and int(at_2['step']) == 2
  # The net's statistics: one update per train step, kept in the checkpoint.
  assert int(at_2['model_state']['batch_stats']['encoder']['count']) == 2
  assert int(final['model_state']['batch_stats']['encoder']['count']) == 4
  # The method's phases: the encoder trains in steps 0-1 only, the rest (the prior too) throughout.
  assert _equal(final['params']['encoder'], at_2['params']['encoder'])
  assert not _equal(final['params']['decoder'], at_2['params']['decoder'])
  assert not np.array_equal(final['params']['prior']['shift'], at_2['params']['prior']['shift'])
  assert set(final['opt_state']) == {'encoder', 'rest'}
  # Resumed across the phase change: the same state, bit for bit.
  assert _equal(final, again)


def test_the_binaries_import_user_extensions(tmp_path):
  workdir = str(tmp_path / 'run')
  env = helpers.subprocess_environment(1)
  train = [sys.executable, os.path.join(ROOT, 'tests', 'mock_binary.py'), 'experiments.train',
           '--import=user_extension', '--config=experiments/configs/xu2019.py:runlocal',
           f'--workdir={workdir}', '--config.model.prior=user_shifted_normal',
           '--config.train.num_steps=2']
  result = subprocess.run(train, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  config = checkpoints.load_config(workdir)
  assert config.model.prior == 'user_shifted_normal'
  with helpers.mock_binarized_mnist(64):
    params, step = helpers.latest_params(workdir)
  assert step == 2 and params['prior']['shift'].shape == (config.model.latent_dim,)


@pytest.mark.parametrize('key, value, message', [
    ('prior', 'no_such_prior', "Unknown model.prior 'no_such_prior'; allowed: .*user_shifted_normal"),
    ('net', 'no_such_net', "Unknown model.net 'no_such_net'; allowed: .*user_counting_dense"),
])
def test_unknown_names_list_the_registered_ones(key, value, message):
  config = _config()
  config.model[key] = value
  with pytest.raises(ValueError, match=message):
    models.create(config.model, SHAPE)
