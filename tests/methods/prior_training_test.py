"""Post-hoc and iterative prior training (Algorithm B.1), and Reg[q(z)]."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import helpers
from vaeprior_jax import checkpoints
from vaeprior_jax.evaluation import report
from vaeprior_jax import methods
from vaeprior_jax.methods import objectives
from vaeprior_jax.methods import prior_fitting
from vaeprior_jax import models
from vaeprior_jax.train import trainer

SHAPE = (28, 28, 1)


def _staged_config(strategy, **train):
  config = helpers.tiny_config(prior='realnvp')
  tc = config.train
  tc.method = strategy
  tc.num_steps = 8               # The pretraining (Iteration 1a): one epoch of 64 mock examples.
  tc.post_hoc_epochs = 2.0       # 16 steps: 8 at 1e-3, 8 at 1e-4.
  tc.iterative_iterations = 3    # 1b: 2 x 4 steps; then (2a, 2b, 3a, 3b) x 4 steps.
  tc.iterative_epochs = 0.5
  tc.checkpoint_every_steps = 4
  tc.max_checkpoints_to_keep = 10
  for k, v in train.items():
    tc[k] = v
  return config


def test_iterative_plan_follows_algorithm_b1():
  tc = _staged_config('iterative').train
  tc.iterative_iterations, tc.iterative_epochs, tc.prior_learning_rates = 4, 400, (1e-3, 1e-4)
  phases = prior_fitting.plan(tc, steps_per_epoch=10)
  assert [(p.name, p.group, p.learning_rate) for p in phases] == [
      ('iteration_1b_1', 'prior', 1e-3), ('iteration_1b_2', 'prior', 1e-4),
      ('iteration_2a', 'vae', 1e-4), ('iteration_2b', 'prior', 1e-4),
      ('iteration_3a', 'vae', 1e-4), ('iteration_3b', 'prior', 1e-4),
      ('iteration_4a', 'vae', 1e-4), ('iteration_4b', 'prior', 1e-4)]
  assert all(p.end - p.start == 4000 for p in phases)
  assert all(a.end == b.start for a, b in zip(phases, phases[1:]))
  assert prior_fitting.total_steps(phases) == 3200 * 10  # 3,200 epochs after Iteration 1a.
  tc.method = 'post_hoc'
  tc.post_hoc_epochs = 3200
  post_hoc = prior_fitting.plan(tc, steps_per_epoch=10)
  assert [(p.start, p.end, p.learning_rate) for p in post_hoc] == [(0, 16000, 1e-3),
                                                                    (16000, 32000, 1e-4)]
  assert prior_fitting.phase_of(post_hoc, 15999).name == 'post_hoc_1'
  assert prior_fitting.phase_of(post_hoc, 16000).name == 'post_hoc_2'


def test_bad_strategy_settings_are_named():
  config = _staged_config('sometimes')
  with pytest.raises(ValueError, match="method 'sometimes'.*joint, post_hoc, iterative"):
    prior_fitting.validate(config)
  config = _staged_config('post_hoc')
  config.model.prior = 'standard'
  with pytest.raises(ValueError, match="model.prior is 'standard'"):
    prior_fitting.validate(config)
  pretrained = _staged_config('joint')
  pretrained.model.prior = 'standard'
  pretrained.model.net = 'conv'
  with pytest.raises(ValueError, match="model.net='conv', this config 'dense'"):
    prior_fitting.check_pretrained_config(_staged_config('post_hoc'), pretrained)


def _flat(tree):
  return {jax.tree_util.keystr(k): np.asarray(v) for k, v in
          jax.tree_util.tree_flatten_with_path(tree)[0]}


def _assert_trees(a, b, equal):
  fa, fb = _flat(a), _flat(b)
  assert fa.keys() == fb.keys()
  same = [np.array_equal(fa[k], fb[k]) for k in fa]
  # Trained: moved (some leaves may not, e.g. layers behind the zero-initialised coupling heads).
  assert all(same) if equal else not all(same), (equal, same)


@pytest.mark.parametrize('group', ['vae', 'prior'])
def test_a_phase_step_trains_only_its_group(group):
  config = _staged_config('iterative')
  model = models.create(config.model, SHAPE)
  x = np.asarray(jax.random.uniform(jax.random.key(0), (8,) + SHAPE) > 0.5, np.float32)
  params = model.init({'params': jax.random.key(1)}, x, jax.random.key(2))['params']
  state = {'params': params, 'opt_state': prior_fitting.init_opt_state(params),
           'step': jnp.zeros((), jnp.int32)}
  phases = prior_fitting.plan(config.train, steps_per_epoch=8)
  step = jax.jit(prior_fitting.make_phase_step(model, group, phases, config.train))
  new, metrics = step(state, x, jax.random.key(3))
  assert np.isfinite(metrics['loss'])
  assert float(metrics['learning_rate']) == pytest.approx(1e-3)
  vae, prior = prior_fitting.split_params(state['params'])
  new_vae, new_prior = prior_fitting.split_params(new['params'])
  _assert_trees(vae, new_vae, equal=group == 'prior')
  _assert_trees(prior, new_prior, equal=group == 'vae')
  other = 'vae' if group == 'prior' else 'prior'
  _assert_trees(state['opt_state'][other], new['opt_state'][other], equal=True)


def test_post_hoc_pretrains_then_fits_only_the_prior(tmp_path):
  workdir = str(tmp_path / 'run')
  with helpers.mock_binarized_mnist(64):
    last = trainer.train_and_evaluate(_staged_config('post_hoc'), workdir)
    pretrained, pre_step = helpers.latest_params(os.path.join(workdir, 'pretrain'))
    params, step = helpers.latest_params(workdir)
    result = report.evaluate(workdir, 'test', num_samples=4, max_examples=16, active_units=False,
                               write_images=False)
  assert checkpoints.load_config(os.path.join(workdir, 'pretrain')).model.prior == 'standard'
  assert pre_step == 8 and step == 16 and np.isfinite(last['loss'])
  assert last['learning_rate'] == pytest.approx(1e-4)
  vae, prior = prior_fitting.split_params(jax.device_get(params))
  _assert_trees(vae, jax.device_get(pretrained), equal=True)  # q(z|x) and p(x|z) stayed fixed.
  assert prior and np.isfinite(result['nll'])


def test_iterative_run_resumed_in_any_phase_repeats_the_uninterrupted_one(tmp_path):
  config = _staged_config('iterative')
  full = str(tmp_path / 'full')
  with helpers.mock_binarized_mnist(64):
    trainer.train_and_evaluate(config, full)
    final, step = helpers.latest_params(full)
    assert step == 24
    for resume_at in (12,):  # Inside iteration_2a (vae); 2b (prior) and 3a, 3b follow.
      resumed = str(tmp_path / f'resumed_{resume_at}')
      helpers.copy_until(full, resumed, resume_at)
      trainer.train_and_evaluate(config, resumed)
      again, _ = helpers.latest_params(resumed)
      _assert_trees(final, again, equal=True)
  # The vae phases did move the encoder away from the pretrained one.
  with helpers.mock_binarized_mnist(64):
    pretrained, _ = helpers.latest_params(os.path.join(full, 'pretrain'))
  assert not np.array_equal(final['encoder']['heads']['mean']['kernel'],
                            pretrained['encoder']['heads']['mean']['kernel'])


def test_init_from_another_workdir(tmp_path):
  base = _staged_config('joint')
  base.model.prior = 'standard'
  with helpers.mock_binarized_mnist(64):
    trainer.train_and_evaluate(base, str(tmp_path / 'standard'))
    config = _staged_config('post_hoc', init_from=str(tmp_path / 'standard'))
    trainer.train_and_evaluate(config, str(tmp_path / 'post_hoc'))
    pretrained, _ = helpers.latest_params(str(tmp_path / 'standard'))
    params, _ = helpers.latest_params(str(tmp_path / 'post_hoc'))
  assert not os.path.exists(tmp_path / 'post_hoc' / 'pretrain')
  _assert_trees(prior_fitting.split_params(params)[0], pretrained, equal=True)
  bad = _staged_config('post_hoc', init_from=str(tmp_path / 'post_hoc'))
  with helpers.mock_binarized_mnist(64):
    with pytest.raises(ValueError, match="standard prior, but its model.prior is 'realnvp'"):
      trainer.train_and_evaluate(bad, str(tmp_path / 'bad'))


def test_qz_regularizer_matches_its_formula_and_is_zero_for_standardised_latents():
  z = np.random.default_rng(0).normal(2.0, 3.0, size=(500, 6)).astype(np.float32)
  expected = np.mean(z.mean(0) ** 2 + (z.var(0) - 1.0) ** 2)
  np.testing.assert_allclose(objectives.qz_regularizer(jnp.asarray(z)), expected, rtol=1e-5)
  standardised = (z - z.mean(0)) / z.std(0)
  assert float(objectives.qz_regularizer(jnp.asarray(standardised))) < 1e-8
  with pytest.raises(ValueError, match=r'\[batch, latent_dim\]'):
    objectives.qz_regularizer(jnp.zeros((3,)))


def test_qz_regularizer_enters_the_joint_loss():
  config = helpers.tiny_config(prior='realnvp')
  model = models.create(config.model, SHAPE)
  x = np.asarray(jax.random.uniform(jax.random.key(0), (8,) + SHAPE) > 0.5, np.float32)
  optimizer = methods.joint.make_optimizer(config.train, steps_per_epoch=8)
  state = trainer.create_train_state(model, optimizer, x, jax.random.key(1))
  losses = {}
  for reg in (False, True):
    config.train.qz_regularizer = reg
    step = jax.jit(trainer.make_train_step(model, optimizer, config.train, steps_per_epoch=8))
    _, metrics = step(state, x, jax.random.key(2))
    losses[reg] = metrics
  assert 'qz_reg' not in losses[False] and float(losses[True]['qz_reg']) > 0
  np.testing.assert_allclose(losses[True]['loss'], losses[False]['loss'] + losses[True]['qz_reg'],
                             rtol=1e-5)
