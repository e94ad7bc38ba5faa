"""VAEPP's training methods (`methods.vaepp`): which groups each step trains, the loss's pieces, and
exact resumption inside the VAE phase and the latent-WGAN phase."""

import json
import math
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import helpers
from vaeprior_jax import checkpoints
from vaeprior_jax import data
from vaeprior_jax.evaluation import analysis
from vaeprior_jax.evaluation import estimators
from vaeprior_jax.evaluation import report
from vaeprior_jax.evaluation.sample_quality import classifier_distance
from vaeprior_jax.evaluation.sample_quality import frechet
from vaeprior_jax import methods
from vaeprior_jax import models
from vaeprior_jax import nets
from vaeprior_jax import priors
from vaeprior_jax.priors.pullback import normalizer
from vaeprior_jax import sharding
from vaeprior_jax.train import trainer

SHAPE = (28, 28, 1)


class _DenseCritic(nn.Module):
  """A small critic for tests (the library's `vaepp` critic is convolutional: slower to compile)."""

  @nn.compact
  def __call__(self, x):
    h = nn.leaky_relu(nn.Dense(16, name='hidden_0')(x.reshape(x.shape[0], -1)), 0.2)
    return nn.Dense(1, name='out')(h)[..., 0]


nets.DISCRIMINATORS.register('test_dense', lambda mc, shape: _DenseCritic(), replace=True)


def _config(method='vaepp', **train):
  config = helpers.tiny_config(net='dense', prior='pullback', posterior='truncated_gaussian',
                               latent_dim=3, discriminator='test_dense', pullback_weight=10.0,
                               latent_gan_units=8, latent_gan_generator_layers=2,
                               latent_gan_critic_layers=2)
  config.train.method = method
  config.train.num_steps = 4
  config.train.batch_size = 8
  config.train.vaepp_prior_samples = 8
  config.train.latent_gan_epochs = 0.25  # Mock data, batch 8: 8 steps per epoch, 3 WGAN steps.
  config.train.latent_gan_critic_steps = 2
  config.train.vaepp_naive_vae_steps = 2
  config.train.checkpoint_every_steps = 1
  config.train.max_checkpoints_to_keep = 20
  config.train.log_every_steps = 2
  config.data.validation_size = 16
  for k, v in train.items():
    config.train[k] = v
  return config


def _changed(before, after):
  """{group: whether any of its parameters changed} for VAEPP's groups."""
  method = methods.vaepp.VAEPP(_config(), 6)
  b, a = method.partition(before), method.partition(after)
  return {g: any(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(b[g]),
                                                           jax.tree.leaves(a[g])))
          for g in methods.vaepp.GROUPS}


def _steps(config, num_steps, switch=True):
  """The run's states after each of `num_steps` plain steps from its initial state (no loop): each
  phase's one step (a lax.switch over a cycle, as the on-device loop compiles it), or with
  `switch=False` each group tuple's own step (as the host loop calls them)."""
  model = models.create(config.model, SHAPE)
  method = methods.from_config(config, 6)
  method.num_train_examples = 48
  x = jnp.asarray(np.random.default_rng(0).uniform(size=(8,) + SHAPE) > 0.5, jnp.float32)
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ('data',))
  state = methods.state_from_variables(
      method, method.initial_variables(model, x, jax.random.key(0), None, mesh))
  if switch:
    steps = {p.key: jax.jit(methods.make_phase_step(model, method, p)) for p in method.phases()}
    pick = lambda p, s: steps[p.key]
  else:
    steps = {(p.key, g): jax.jit(f) for p in method.phases()
             for g, f in methods.phase_steps(model, method, p).items()}
    pick = lambda p, s: steps[p.key, p.groups_at(s)]
  states, metrics = [jax.device_get(state)], []
  for s in range(num_steps):
    state, m = pick(methods.phase_of(method.phases(), s), s)(state, x, jax.random.key(1))
    states.append(jax.device_get(state))
    metrics.append(jax.device_get(m))
  return method, states, metrics


def test_which_groups_each_step_trains():
  # vaepp: 4 combined steps (vae and critic), then the latent WGAN: critic, critic, generator, ...
  method, states, metrics = _steps(_config(), 7)
  assert [p.name for p in method.phases()] == ['vae', 'latent_gan']
  assert method.phases()[1].end - method.phases()[1].start == 3  # 0.25 epochs x 6 x (2 + 1) / 2.
  expected = [{'vae', 'critic'}] * 4 + [{'latent_critic'}, {'latent_critic'}, {'latent_generator'}]
  got = [{g for g, c in _changed(states[i]['params'], states[i + 1]['params']).items() if c}
         for i in range(7)]
  assert got == expected
  assert all(np.isfinite(m['loss']) for m in metrics)
  assert metrics[0]['gradient_penalty'] > 0 and np.isnan(metrics[6]['latent_critic_loss'])
  # vaepp_naive as the paper's Algorithm 1: vae, vae, critic, vae, ... (n_c = 2 VAE steps per
  # critic step, each on its own batch), and no penalty on the VAE's steps.
  paper = _config('vaepp_naive', vaepp_naive_same_batch=False)
  _, states, metrics = _steps(paper, 4)
  got = [{g for g, c in _changed(states[i]['params'], states[i + 1]['params']).items() if c}
         for i in range(4)]
  assert got == [{'vae'}, {'vae'}, {'critic'}, {'vae'}]
  assert metrics[0]['gradient_penalty'] == 0 and metrics[2]['gradient_penalty'] > 0
  # The host loop's per-group steps compute what the switch does, with the same metrics.
  _, host_states, host_metrics = _steps(paper, 4, switch=False)
  for a, b in zip(states, host_states):
    assert all(np.array_equal(u, v) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
  assert [sorted(m) for m in host_metrics] == [sorted(m) for m in metrics]
  # vaepp_naive as the code (the default): every step updates the VAE, then the critic on the same
  # batch from the updated VAE: two single-group updates of one step, by hand.
  method, states, metrics = _steps(_config('vaepp_naive'), 2)
  got = [{g for g, c in _changed(states[i]['params'], states[i + 1]['params']).items() if c}
         for i in range(2)]
  assert got == [{'vae', 'critic'}] * 2
  model = models.create(_config('vaepp_naive').model, SHAPE)
  vae = methods.base.make_step(model, method, ('vae',), advance=False)
  critic = methods.base.make_step(model, method, ('critic',), advance=False)
  x = jnp.asarray(np.random.default_rng(0).uniform(size=(8,) + SHAPE) > 0.5, jnp.float32)
  key = jax.random.key(1)


  @jax.jit
  def by_hand(state):  # (One jit, as the step's: the same fusion, so the same bits.)
    after_vae, vae_metrics = vae(state, x, key)
    return after_vae, vae_metrics, *critic(after_vae, x, jax.random.fold_in(key, 1))

  after_vae, vae_metrics, after_both, critic_metrics = by_hand(states[0])
  assert int(after_both['step']) == 0 and int(states[1]['step']) == 1
  assert any(not np.array_equal(u, v) for u, v in zip(jax.tree.leaves(after_vae['params']),
                                                        jax.tree.leaves(after_both['params'])))
  for u, v in zip(jax.tree.leaves(after_both['params']), jax.tree.leaves(states[1]['params'])):
    np.testing.assert_array_equal(u, v)
  # The VAE's objective as the loss, not the critic's; the critic's penalty.
  np.testing.assert_allclose(metrics[0]['loss'], vae_metrics['loss'], rtol=1e-5)
  np.testing.assert_allclose(metrics[0]['gradient_penalty'], critic_metrics['gradient_penalty'],
                             rtol=1e-4)
  assert metrics[0]['gradient_penalty'] > 0 and abs(metrics[0]['loss'] - critic_metrics['loss']) > 1
  np.testing.assert_allclose(metrics[0]['elbo'], vae_metrics['elbo'], rtol=1e-5)


def test_vaepp_plus_flow_trains_the_planar_layers_with_the_vae_and_feeds_samples_to_the_wgan():
  config = _config(latent_gan_real='sample')
  config.model.update(posterior='planar', planar_layers=3, planar_base_truncation=2.0)
  _, states, metrics = _steps(config, 5)
  flow = lambda s: s['params']['posterior']['flow']
  assert not np.array_equal(flow(states[0])['v'], flow(states[1])['v'])   # A VAE step.
  np.testing.assert_array_equal(flow(states[4])['v'], flow(states[5])['v'])  # A latent-WGAN step.
  assert all(np.isfinite(m['loss']) for m in metrics)


def test_the_loss_pieces():
  config = _config()
  model = models.create(config.model, SHAPE)
  x = jnp.asarray(np.random.default_rng(1).uniform(size=(8,) + SHAPE) > 0.5, jnp.float32)
  variables = model.init(jax.random.key(0), x, jax.random.key(1))
  t = model.apply(variables, x, jax.random.key(2), 8, 48, 'wgan_div_1', None, None, True,
                  method=methods.vaepp.batch_terms)

  def loss_of(config, trained):
    """(loss, metrics) of `config`'s method on x, for the groups `trained`."""
    method = methods.from_config(config, 6)
    method.num_train_examples = 48
    return method.loss(model, variables['params'], {'partition': variables['partition']},
                       trained, x, jax.random.key(2), jnp.int32(0))[:2]

  # beta = W sigmoid(0) at the start; log Z_batch is the log of the two estimates' average.
  assert float(t['beta']) == pytest.approx(5.0)
  assert float(t['log_z_batch']) == pytest.approx(
      math.log((math.exp(t['log_z_prior']) + math.exp(t['log_z_posterior'])) / 2), rel=1e-5)
  groups = methods.from_config(config, 6).partition(variables['params'])
  trained = {g: groups[g] for g in ('vae', 'critic')}  # Algorithm 2's step.
  loss, metrics = loss_of(config, trained)
  from vaeprior_jax.methods import objectives  # pylint: disable=g-import-not-at-top
  l2 = config.train.l2_reg * float(objectives.l2_penalty(trained))
  expected = (-t['reconstruction'] + max(float(t['kl']), 0.0) + 10.0 * t['gradient_penalty'] + l2)
  assert float(loss) == pytest.approx(float(expected), rel=1e-5)
  assert metrics['elbo'] == pytest.approx(float(t['reconstruction'] - t['kl']), rel=1e-5)
  # The paper's scale: beta instead of W; unscaled (CIFAR-10's Algorithm 1 script): R itself.
  for scale, weight in (('beta', 5.0), ('one', 1.0)):
    config.train.vaepp_penalty_scale = scale
    scaled, _ = loss_of(config, trained)
    assert float(scaled) == pytest.approx(
        float(expected - (10.0 - weight) * t['gradient_penalty']), rel=1e-5)
  # Algorithm 1's critic step: mean D(x) - mean D(G(eps)) + W R, without L2 (the code's _nD
  # scripts), or with it (vaepp_naive_critic_l2).
  critic = {'critic': groups['critic']}
  critic_l2 = config.train.l2_reg * float(objectives.l2_penalty(critic))
  assert critic_l2 > 0
  for with_l2 in (False, True):
    loss_d, metrics_d = loss_of(_config('vaepp_naive', vaepp_naive_critic_l2=with_l2), critic)
    assert float(loss_d) == pytest.approx(float(
        t['critic_real'] - t['critic_fake'] + 10.0 * t['gradient_penalty']
        + (critic_l2 if with_l2 else 0.0)), rel=1e-5)
    assert float(metrics_d['l2']) == pytest.approx(critic_l2 if with_l2 else 0.0, rel=1e-5)


def test_bad_settings_are_named():
  config = _config()
  config.model.prior = 'standard'
  with pytest.raises(ValueError, match='set model.prior=pullback'):
    methods.validate(config)
  config = _config(gradient_penalty='wgan')
  with pytest.raises(ValueError, match="Unknown train.gradient_penalty 'wgan'"):
    methods.validate(config)
  config = _config(latent_gan_epochs=0.0)
  config.model.pullback_sample_start = 'gan'
  with pytest.raises(ValueError, match='set train.latent_gan_epochs > 0'):
    methods.validate(config)


def _flat(tree):
  return [np.asarray(v) for v in jax.tree.leaves(tree)]


def _final_state(workdir, config, step):
  model = models.create(config.model, SHAPE)
  manager = checkpoints.checkpoint_manager(workdir)
  state = jax.device_get(checkpoints.restore_state(
      manager, trainer.abstract_train_state(model, config, SHAPE), step))
  manager.close()
  return state


def test_resumes_exactly_in_the_vae_and_the_latent_gan_phase_and_evaluates(tmp_path):
  config, full = _config(), str(tmp_path / 'full')
  config.eval.log_z_samples = 8
  config.eval.log_z_max_images = 16
  config.eval.log_z_prior_samples = 512
  config.train.log_z_every_epochs = 0.25  # log Z after steps 2, 4 and 6 (8 steps per epoch).
  with helpers.mock_binarized_mnist(64):
    last = trainer.train_and_evaluate(config, full)
    final = _final_state(full, config, 7)
    for resume_at in (2, 5):  # Inside the VAE phase (steps 0-3) and the latent WGAN's (4-6).
      resumed = str(tmp_path / f'resumed_{resume_at}')
      helpers.copy_until(full, resumed, resume_at)
      trainer.train_and_evaluate(config, resumed)
      again = _final_state(resumed, config, 7)
      assert all(np.array_equal(a, b) for a, b in zip(_flat(again), _flat(final))), resume_at
    result = report.evaluate(full, 'test', num_samples=4, max_examples=16, active_units=False,
                               write_images=True)
    test_images = data.load(config.data).eval_images('test', 0)
    from experiments import log_z_spread  # pylint: disable=g-import-not-at-top
    spread = log_z_spread.log_z_spread(full, repeats=2, num_images=8, samples=4)
  assert np.isfinite(last['loss'])
  # log Z refreshed during training: stored in the state (so restored on resume, checked above
  # bitwise) and logged at steps 2, 4 and 6.
  stored = float(final['model_state']['partition']['prior']['log_z'])
  assert stored != 0.0
  logged = analysis.metric_curve(full, 'log_z')
  assert [s for s, _ in logged] == [2, 4, 6] and logged[-1][1] == pytest.approx(stored)
  for key in ('log_z', 'log_z_stderr', 'nll', 'kl_base_to_prior', 'critic_prior',
              'critic_posterior', 'beta'):
    assert np.isfinite(result[key]), key
  assert result['log_z_num_samples'] == 8 * 16 and result['log_z_images'] == 16
  for name in ('samples.png', 'base_samples.png', 'gan_samples.png'):
    assert os.path.exists(os.path.join(full, name))
  # The likelihood is that of the refreshed log Z: recomputed with it set, the NLL is the same.
  model = models.create(config.model, SHAPE)
  variables = {'params': final['params'], **final['model_state']}
  variables = normalizer.set_log_z(variables, result['log_z'])
  metrics = estimators.make_batch_metrics(model, 4, 100)
  eval_key = jax.random.fold_in(checkpoints.root_keys(config.seed)['eval'], 0)
  nll_key = jax.random.split(eval_key, 3)[0]
  mesh = sharding.make_mesh()
  batch_size = sharding.round_up_to_devices(config.eval.batch_size, mesh)
  again = estimators.split_metrics(metrics, variables, test_images, nll_key, mesh, batch_size, 16, 0)
  assert again['nll'] == pytest.approx(result['nll'], rel=1e-5)
  # The prior-based check: with its log Z set, the same computation gives nll_with_prior_log_z.
  assert result['log_z_prior_num_samples'] == config.eval.log_z_prior_samples
  shifted = normalizer.set_log_z(variables, result['log_z_prior'])
  with_prior = estimators.split_metrics(metrics, shifted, test_images, nll_key, mesh, batch_size, 16,
                                        0)
  assert with_prior['nll'] == pytest.approx(result['nll_with_prior_log_z'], rel=1e-5)
  assert with_prior['elbo'] == pytest.approx(result['elbo_with_prior_log_z'], rel=1e-5)
  assert result['log_z_deficit_95'] >= 0.0
  assert abs(result['log_z']) > 1e-3
  # experiments.log_z_spread: both posteriors on the same parameters, a value per repeat.
  for posterior in ('truncated_gaussian', 'gaussian'):
    assert len(spread[posterior]['log_z']) == 2
    assert np.all(np.isfinite(spread[posterior]['log_z']))
  assert spread['truncated_gaussian']['log_z'] != spread['gaussian']['log_z']


def test_early_stopping_validates_with_log_z_refreshed_at_that_step(tmp_path):
  """With early stopping, log Z is refreshed before each validation even when its own schedule is
  off: the logged val_nll is the one recomputed from the checkpoint of that step (which holds the
  refreshed log Z), not the one of the stale stored value."""
  config, workdir = _config(num_steps=4, latent_gan_epochs=0.0, log_z_every_epochs=0.0,
                            early_stopping=True, early_stopping_num_samples=4), str(tmp_path / 'w')
  config.eval.log_z_samples, config.eval.log_z_max_images = 4, 16
  with helpers.mock_binarized_mnist(64):
    method = methods.from_config(config, 1)
    assert method.host_update_before_validation
    dataset = data.load(config.data)
    steps_per_epoch = len(dataset.eval_images('train', 0)) // config.train.batch_size
    config.train.eval_every_epochs = 2 / steps_per_epoch  # Validation after steps 2 and 4.
    trainer.train_and_evaluate(config, workdir)
    logged_log_z = dict(analysis.metric_curve(workdir, 'log_z'))
    val_nll = dict(analysis.metric_curve(workdir, 'val_nll'))
    assert sorted(logged_log_z) == sorted(val_nll) == [2, 4]
    state = _final_state(workdir, config, 4)
    stored = float(state['model_state']['partition']['prior']['log_z'])
    assert stored == pytest.approx(logged_log_z[4]) and abs(stored) > 1e-3
    model = models.create(config.model, SHAPE)
    mesh = sharding.make_mesh()
    eval_key = checkpoints.root_keys(config.seed)['eval']
    metrics = estimators.make_batch_metrics(model, 4, config.eval.chunk_size)
    variables = {'params': state['params'], **state['model_state']}
    again = estimators.split_metrics(
        metrics, variables, dataset.eval_images('validation', seed=4),
        jax.random.fold_in(jax.random.fold_in(eval_key, 0x7a11d), 4), mesh,
        sharding.round_up_to_devices(config.eval.batch_size, mesh))
  assert again['nll'] == pytest.approx(val_nll[4], rel=1e-5)


def test_a_colour_run_trains_and_evaluates_in_bits_per_dim(tmp_path):
  """The CIFAR-10 sampling entry end to end on mock 8-bit images, its nets replaced by small dense
  ones (the code's colour nets take minutes to compile here; tests/priors/pullback_test.py builds them):
  the discretized logistic with one learned log-scale works on any net, training moves the
  log-scale, evaluation reports bits/dim = NLL / (3072 ln 2) beside the NLL."""
  from experiments.configs import vaepp as vaepp_configs  # pylint: disable=g-import-not-at-top
  config = vaepp_configs.get_config('vaepp,cifar10_sampling,runlocal')
  config.model.update(latent_dim=4, pullback_sample_start='base', net='dense',
                      discriminator='test_dense', latent_gan_net='mlp')
  config.train.update(num_steps=2, batch_size=8, vaepp_prior_samples=8, latent_gan_epochs=0.0,
                      checkpoint_every_steps=2, log_every_steps=1)
  config.data.validation_size = 8
  config.eval.update(num_samples=2, log_z_samples=2, log_z_max_images=8, log_z_prior_samples=16,
                     batch_size=8)
  workdir = str(tmp_path / 'w')
  with helpers.mock_tfds(24):
    trainer.train_and_evaluate(config, workdir)
    result = report.evaluate(workdir, 'test', max_examples=8, active_units=False,
                             write_images=False, eval_overrides={
                                 'log_z_ais_temperatures': 5, 'log_z_ais_chains': 8,
                                 'log_z_ais_sampler_steps': 200})
    with pytest.raises(ValueError, match="Unknown eval.ais; allowed: "):
      report.evaluate(workdir, 'test', eval_overrides={'ais': 1})
  model = models.create(config.model, (32, 32, 3))
  manager = checkpoints.checkpoint_manager(workdir)
  state = jax.device_get(checkpoints.restore_state(
      manager, trainer.abstract_train_state(model, config, (32, 32, 3)), 2))
  manager.close()
  assert float(state['params']['likelihood']['log_scale']) != 0.0
  assert result['bits_per_dim'] == pytest.approx(result['nll'] / (3072 * math.log(2)))
  assert 0.0 < result['bits_per_dim'] < 20.0
  assert np.isfinite(result['bits_per_dim_with_prior_log_z'])
  # AIS bounds on log Z, and the NLL interval: the NLL moves one for one with log Z.
  for side in ('lower', 'upper'):
    assert result[f'nll_ais_{side}'] == pytest.approx(
        result['nll'] + result[f'log_z_ais_{side}'] - result['log_z'])
  assert result['log_z_ais_settings_num_temperatures'] == 5
  assert np.isfinite(result['log_z_ais_sampler_rhat_energy'])


def _grey_level_config():
  """The dynamic-MNIST entry (`vaepp,mnist`) on small dense nets, 2 steps, as the code runs it:
  trained on grey levels."""
  from experiments.configs import vaepp as vaepp_configs  # pylint: disable=g-import-not-at-top
  config = vaepp_configs.get_config('vaepp,mnist,runlocal')
  config.model.update(latent_dim=3, pullback_sample_start='base', net='dense',
                      discriminator='test_dense')
  config.train.update(num_steps=2, batch_size=8, vaepp_prior_samples=8, latent_gan_epochs=0.0,
                      checkpoint_every_steps=2, log_every_steps=1)
  config.data.validation_size = 8
  return config


def test_a_grey_level_run_is_tested_on_binary_images_with_the_proposal_of_their_grey_image(tmp_path):
  """The dynamic-MNIST entry as the code runs it, on mock data and small dense nets: trained on grey
  levels, evaluated on the binarized test images with q(z|e)."""
  config = _grey_level_config()
  config.eval.update(num_samples=2, log_z_samples=2, log_z_max_images=8, log_z_prior_samples=16,
                     batch_size=8)
  workdir = str(tmp_path / 'w')
  with helpers.mock_tfds(24):
    trainer.train_and_evaluate(config, workdir)
    result = report.evaluate(workdir, 'test', max_examples=16, active_units=False,
                               write_images=True)
    # Sample quality of a pull-back run: by default VAEPP's protocol (against the training split),
    # for MALA samples, both baselines, reconstructions, and as many real test images ('data').
    classifier_dir = str(tmp_path / 'classifier')
    quality = report.sample_quality(workdir, classifier_dir, num_images=24, classifier_steps=2)
    # The floor, independently: with as many images as the test split holds, 'data' is all of it;
    # the mock splits hold the same images, so it is 0 here.
    params, _ = classifier_distance.load_or_train(classifier_dir, config.data)
    stats = lambda split: frechet.gaussian_statistics(classifier_distance.features(
        params, classifier_distance.LABELLED['mnist'],
        classifier_distance.load_labelled(config.data, split)[0]))
    floor = frechet.frechet_distance(*stats('test'), *stats('train'))
    # MALA settings for one report: a huge step is almost never accepted, a tiny one almost always,
    # and adaptation moves the size (up, at ~100% acceptance); the default report stays.
    rejected = report.sample_quality(workdir, classifier_dir, num_images=24,
                                       settings={'mala': dict(steps=4, step_size=1e6)},
                                       bootstrap=3)
    adapted = report.sample_quality(workdir, classifier_dir, num_images=24,
                                      settings={'mala': dict(steps=2, step_size=1e-12,
                                                             adapt_steps=3)})
    with pytest.raises(ValueError, match='mala_step_size must be > 0, got 0.0'):
      report.check_sample_quality(workdir, classifier_dir,
                                 settings={'mala': dict(step_size=0.0)})
    # The report's MALA samples are the model's own (`VAE.sample`, the same keys).
    model = models.create(config.model, (28, 28, 1))
    params, _ = checkpoints.restore_variables(workdir, config, model, (28, 28, 1))
    key = jax.random.key(3)
    hooks = priors.REGISTRY.info('pullback')['evaluation_hooks']
    sampler, _, record = hooks.samples_with_report(config)
    with_chains, chains = report._samples_with_report(model, params, sampler, record, 12, key,
                                                      batch=8)
    np.testing.assert_array_equal(with_chains, report._generated(model, params, 'samples', 12, key,
                                                                   None, batch=8))
  assert result['proposal_input'] == 'grey' and np.isfinite(result['nll'])
  assert os.path.exists(os.path.join(workdir, 'reconstructions_test.png'))
  assert quality['protocol'] == 'vaepp' and quality['reference_split'] == 'train'
  assert quality['num_generated'] == quality['num_reference'] == quality['num_data'] == 24
  assert quality['cfd_data'] == pytest.approx(floor, abs=1e-6) and abs(floor) < 1e-3
  kinds = ('samples', 'base_samples', 'gan_samples', 'reconstructions')
  assert sorted(k for k in quality if k.startswith('cfd_')) == sorted(
      f'cfd_{k}' for k in kinds + ('data',))
  assert all(np.isfinite(quality[f'cfd_{k}']) and quality[f'cfd_{k}'] > 0 for k in kinds)
  with open(os.path.join(workdir, 'sample_quality_vaepp.json')) as f:
    assert json.load(f) == json.loads(json.dumps(quality))
  assert quality['mala']['steps'] == config.model.pullback_mala_steps > 0
  assert 0.0 <= quality['mala']['acceptance_rate'] <= 1.0 and 0.0 <= chains['acceptance_rate'] <= 1.0
  assert rejected['mala'] == dict(steps=4, step_size=1e6, adapt_steps=0,
                                  step_size_after_adaptation=pytest.approx(1e6, rel=1e-6),
                                  acceptance_rate=pytest.approx(0.0, abs=0.05))
  assert adapted['mala']['acceptance_rate'] > 0.95
  assert 1e-11 < adapted['mala']['step_size_after_adaptation'] < 1e-6  # Dual averaging: ~100x.
  assert all(rejected[f'cfd_{k}_sd'] > 0 for k in kinds) and 'cfd_samples_sd' not in quality
  with open(os.path.join(workdir, 'sample_quality_vaepp_mala2_1e-12_adapt3.json')) as f:
    assert json.load(f)['mala'] == adapted['mala']



def test_the_latent_wgans_penalty_has_its_own_weight_not_the_image_critics():
  """The colour configs scale the image critic's penalty for its coordinates; the latent critic's
  keeps the kind's weight (2 for WGAN-div) unless train.latent_gan_penalty_weight says otherwise."""
  model = models.create(_config().model, SHAPE)
  x = jax.random.uniform(jax.random.key(0), (8,) + SHAPE)
  variables = models.init_variables(model, x, jax.random.key(1))
  rng = jax.random.key(2)

  def latent_penalty(**train):
    config = _config(gradient_penalty_weight=0.032, **train)
    method = methods.from_config(config, 6)
    groups = method.partition(variables['params'])
    state = {k: v for k, v in variables.items() if k != 'params'}
    _, metrics, _ = method.loss(model, variables['params'], state, {'latent_critic':
                                groups['latent_critic']}, x, rng, jnp.asarray(100))
    return float(metrics['latent_gradient_penalty'])

  def direct(weight):
    return float(model.apply(variables, x, rng, 8, 'mean', 'wgan_div_1', weight, None,
                             method=methods.vaepp.latent_gan_terms)['latent_gradient_penalty'])

  assert direct(2.0) > 0 and direct(2.0) == pytest.approx(2.0 / 0.032 * direct(0.032))
  assert latent_penalty() == pytest.approx(direct(2.0))
  assert latent_penalty(latent_gan_penalty_weight=5.0) == pytest.approx(direct(5.0))


def test_a_report_stopped_in_mala_sampling_goes_on_from_the_batches_kept(tmp_path, monkeypatch):
  """The pull-back prior's MALA samples (slow: chains per image) are kept a batch at a time: a
  report stopped after the first of three batches draws only the other two on its rerun, and the
  report is the uninterrupted one."""
  from vaeprior_jax import interrupts  # pylint: disable=g-import-not-at-top
  config = _grey_level_config()
  workdir, classifier_dir = str(tmp_path / 'w'), str(tmp_path / 'classifier')
  monkeypatch.setattr(report, 'GENERATION_BATCH', 8)
  batches, stop_at = helpers.count_kept_parts(monkeypatch, '.samples.images.partial.npz')
  quality = lambda: report.sample_quality(workdir, classifier_dir, num_images=24,
                                          classifier_steps=2)
  partial = os.path.join(workdir, 'sample_quality_vaepp.samples.images.partial.npz')
  with helpers.mock_tfds(24):
    trainer.train_and_evaluate(config, workdir)
    whole = quality()
    assert len(batches) == 3 and not os.path.exists(partial)
    batches.clear()
    stop_at[:] = [1]
    try:
      with pytest.raises(interrupts.Interrupted):
        quality()
    finally:
      interrupts.clear()
    with np.load(partial) as kept:
      assert int(kept['__batches__']) == 1 and kept['output0'].shape[:2] == (1, 8)
    batches.clear()
    stop_at.clear()
    resumed = quality()
  assert len(batches) == 2 and not os.path.exists(partial)
  assert json.loads(json.dumps(resumed)) == json.loads(json.dumps(whole))
