"""Dai & Wipf's two-stage VAE: the second stage's inputs, two-stage sampling, and the two-stage method
(each stage trains its own group; a run resumes exactly inside either stage)."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import helpers
from vaeprior_jax import checkpoints
from vaeprior_jax import config as config_lib
from vaeprior_jax.evaluation import analysis
from vaeprior_jax.evaluation import records
from vaeprior_jax.evaluation import report
from vaeprior_jax.evaluation.sample_quality import classifier_distance
from vaeprior_jax import methods
from vaeprior_jax import models
from vaeprior_jax.train import trainer

SHAPE = (28, 28, 1)


def _config(**train):
  # The first stage: Dai & Wipf's ResNet, small; its batch norm statistics are model state.
  config = helpers.tiny_config(prior='standard', likelihood='gaussian', two_stage=True,
                               net='dai_resnet', mean_activation='sigmoid', latent_dim=4,
                               dai_resnet_base_dim=2, dai_resnet_num_scales=1, dai_resnet_fc_dim=8)
  config.data.dataset = 'mnist'
  config.data.binarize = False
  config.data.validation_size = 16
  config.model.second_stage_units = 16
  config.train.method = 'two_stage'
  config.train.num_steps = 4
  config.train.warmup_epochs = 0.0
  config.train.second_stage_epochs = 1.0  # 48 mock training images / batch 8: 6 steps.
  config.train.second_stage_learning_rate = 1e-3
  config.train.checkpoint_every_steps = 2
  config.train.max_checkpoints_to_keep = 10
  for k, v in train.items():
    config.train[k] = v
  return config


def _model_and_params(config):
  config.model.net = 'dense'
  model = models.create(config.model, SHAPE)
  x = jax.random.uniform(jax.random.key(0), (6,) + SHAPE)
  params = model.init(jax.random.key(1), x, jax.random.key(2))['params']
  return model, params, x


def test_second_stage_inputs_are_fresh_draws_of_the_first_stages_posterior():
  model, params, x = _model_and_params(_config())
  assert set(params) == {'first', 'second'}
  draw = lambda k: model.apply({'params': params}, x, k, method=model.second_stage_inputs)
  z = jax.vmap(draw)(jax.random.split(jax.random.key(3), 4000))  # [4000, 6, d]
  assert not np.allclose(z[0], z[1])  # A fresh eps for every call (every train step).
  mean, log_std = model.apply({'params': params}, x, method=lambda m, x_: m.first.encoder(x_))
  np.testing.assert_allclose(z.mean(0), mean, atol=0.1)
  np.testing.assert_allclose(z.std(0), jnp.exp(log_std), rtol=0.1)
  # No gradient reaches the first stage through the second stage's loss.
  grads = jax.grad(lambda p: -jnp.sum(model.apply(
      {'params': p}, x, jax.random.key(4), method=model.second_stage_terms)['log_px_z']))(params)
  assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(grads['first']))
  assert any(float(jnp.abs(g).max()) > 0.0 for g in jax.tree.leaves(grads['second']))


def test_two_stage_samples_add_gamma_z_noise_to_the_second_stage_mean():
  model, params, _ = _model_and_params(_config())
  params = jax.tree.map(lambda p: p, params)
  params['second']['likelihood']['log_gamma'] = jnp.log(jnp.float32(0.5))
  key = jax.random.key(5)
  z = model.apply({'params': params}, key, 20000, method=model.sample_prior)
  second_key, _ = jax.random.split(key)
  z_mean = model.apply({'params': params}, second_key, 20000,
                       method=lambda m, k, n: m.second.sample(k, n))
  np.testing.assert_allclose(np.std(np.asarray(z - z_mean)), 0.5, rtol=0.02)
  x = model.apply({'params': params}, key, 3, method=model.sample)
  baseline = model.apply({'params': params}, key, 3, method=model.first_stage_sample)
  assert x.shape == baseline.shape == (3,) + SHAPE


def _flat(tree):
  return [np.asarray(v) for v in jax.tree.leaves(tree)]


def _equal(a, b):
  return all(np.array_equal(x, y) for x, y in zip(_flat(a), _flat(b)))


def _state(workdir, config, steps=None):
  """{step: the train state saved at that step} for `steps` (default: every saved step)."""
  model = models.create(config.model, SHAPE)
  manager = checkpoints.checkpoint_manager(workdir)
  abstract = trainer.abstract_train_state(model, config, SHAPE)
  states = {s: jax.device_get(checkpoints.restore_state(manager, abstract, s))
            for s in (steps or manager.all_steps())}
  manager.close()
  return states


def test_the_two_stage_method_trains_each_stage_and_resumes_inside_either(tmp_path):
  config, full = _config(), str(tmp_path / 'full')
  with helpers.mock_tfds(64):
    last = trainer.train_and_evaluate(config, full)
    states = _state(full, config)
    assert sorted(states) == [2, 4, 6, 8, 10]
    for resume_at in (2, 6):  # Inside stage 1 (steps 0-3) and inside stage 2 (4-9).
      resumed = str(tmp_path / f'resumed_{resume_at}')
      helpers.copy_until(full, resumed, resume_at)
      trainer.train_and_evaluate(config, resumed)
      assert _equal(_state(resumed, config, [10])[10], states[10]), resume_at
    result = report.evaluate(full, 'test', num_samples=4, max_examples=16, active_units=False,
                               write_images=True)
    spectra = analysis.analyze_two_stage(full, max_examples=16)
    classifier_dir = str(tmp_path / 'classifier')
    quality = report.sample_quality(full, classifier_dir, num_images=20, classifier_steps=5)
    quality_again = report.sample_quality(full, classifier_dir, num_images=20, export=True)
    # A first stage trained elsewhere: stage 1 is skipped, its parameters are the start.
    second_only = str(tmp_path / 'second_only')
    trainer.train_and_evaluate(_config(init_from=full), second_only)
    started = _state(second_only, _config(init_from=full), [6])
    assert helpers.checkpoint_steps(second_only) == [2, 4, 6]
  assert np.isfinite(last['loss']) and np.isfinite(result['nll']) and 'gamma_z' in last
  # The classifier Fréchet distance: one classifier kept in its folder and reused (same numbers),
  # for samples, first-stage samples and reconstructions; no FID without Inception weights.
  assert sorted(os.listdir(classifier_dir)) == ['classifier.json', 'classifier.npz']
  exported = quality_again.pop('exported')
  assert quality == quality_again and 'not FID' in quality['classifier']['name']
  # Each report is also a record (evaluation.records), with its protocol.
  quality_records = [r for r in records.read(full) if r['kind'] == 'sample_quality']
  assert len(quality_records) == 2 and quality_records[0]['protocol']['num_generated'] == 20
  assert quality_records[0]['metrics'] == json.loads(json.dumps(quality))
  # The scored images, exported for external FID tools: uint8 RGB, each min-max normalised (the
  # two_stage protocol's default, as the authors' script), reconstructions included.
  assert sorted(exported) == ['first_stage_samples', 'reconstructions', 'samples']
  assert quality['normalize'] is True
  for kind, path in exported.items():
    with np.load(path) as f:
      images = f['images']
    assert images.dtype == np.uint8 and images.shape == (20, 28, 28, 3), kind
    assert (images.min(axis=(1, 2, 3)) == 0).all() and (images.max(axis=(1, 2, 3)) == 255).all()
  assert all(quality[f'cfd_{kind}'] > 0
             for kind in ('samples', 'first_stage_samples', 'reconstructions', 'data'))
  assert quality['num_data'] == 20  # Training images: the reference is the test split.
  assert not any('fid' in k for k in quality)
  with open(os.path.join(full, 'sample_quality_two_stage.json')) as f:
    assert json.load(f) == json.loads(json.dumps(dict(quality, exported=exported)))
  other = config_lib.defaults().data
  other.dataset = 'fashion_mnist'
  with pytest.raises(ValueError, match='holds the mnist classifier'):
    classifier_distance.load_or_train(classifier_dir, other)
  other.dataset = 'binarized_mnist'
  with pytest.raises(ValueError, match="needs labels; data.dataset='binarized_mnist'"):
    classifier_distance.load_or_train(classifier_dir, other)
  # The same errors before anything is loaded (experiments.evaluate checks at start-up).
  assert report.check_sample_quality(full, classifier_dir) is None
  foreign = tmp_path / 'fashion_classifier'
  foreign.mkdir()
  (foreign / 'classifier.json').write_text(json.dumps({'dataset': 'fashion_mnist'}))
  (foreign / 'classifier.npz').write_bytes(b'')
  with pytest.raises(ValueError, match="holds the fashion_mnist classifier, not mnist's"):
    report.check_sample_quality(full, str(foreign))
  with pytest.raises(ValueError, match='num_images must be >= 2, got 1'):
    report.check_sample_quality(full, classifier_dir, num_images=1)
  with pytest.raises(ValueError, match="Unknown quality protocol 'fid50k'; allowed: vaepp, two_stage"):
    report.check_sample_quality(full, classifier_dir, protocol='fid50k')
  with pytest.raises(ValueError, match="MALA settings .*steps.* need a run with a pull-back prior; "
                     "this run's model.prior is 'standard'"):
    report.check_sample_quality(full, classifier_dir, settings={'mala': dict(steps=5)})
  with pytest.raises(ValueError, match='bootstrap must be 0 .none. or >= 2 resamples, got 1'):
    report.check_sample_quality(full, classifier_dir, bootstrap=1)
  assert [s for s, _ in spectra['gamma_z']] == [s for s, _ in spectra['gamma']] == [5, 10]
  assert len(spectra['spectra']['q_z']) == len(spectra['spectra']['q_u']) == 4
  assert os.path.exists(os.path.join(full, 'analysis', 'figure1_spectra.png'))
  assert os.path.exists(os.path.join(full, 'samples_first_stage.png'))
  assert _equal(started[6]['params']['first'], states[10]['params']['first'])
  # Batch statistics: trained in stage 1, untouched by stage 2 (its inputs come from the first stage
  # in inference mode), resumed (above: whole states) and restored with the parameters.
  stats = lambda s: s['model_state']['batch_stats']['first']
  assert not _equal(stats(states[2]), stats(states[4]))
  assert _equal(stats(states[4]), stats(states[10]))
  assert _equal(stats(started[6]), stats(states[10]))
  model = models.create(config.model, SHAPE)
  variables, step = checkpoints.restore_variables(full, config, model, SHAPE)
  assert step == 10 and _equal(variables['batch_stats']['first'], stats(states[10]))
  # What evaluation applies the model with are the trained statistics: with the initial ones the
  # ELBO differs.
  x = jnp.asarray(np.random.default_rng(0).uniform(size=(8,) + SHAPE), jnp.float32)
  init = models.init_variables(model, x, jax.random.key(0))
  elbo = lambda v: model.apply(v, x, jax.random.key(1))
  assert not np.array_equal(elbo(variables), elbo(dict(variables, batch_stats=init['batch_stats'])))
  # Stage 1 (steps 0-3) moves the first stage only, stage 2 (4-9) the second only.
  assert not _equal(states[2]['params']['first'], states[4]['params']['first'])
  assert _equal(states[2]['params']['second'], states[4]['params']['second'])
  assert _equal(states[4]['params']['first'], states[10]['params']['first'])
  assert not _equal(states[4]['params']['second'], states[10]['params']['second'])


def test_bad_two_stage_settings_are_named():
  config = _config()
  config.model.two_stage = False
  with pytest.raises(ValueError, match='set model.two_stage=True'):
    methods.validate(config)
  config = _config()
  config.model.prior = 'realnvp'
  with pytest.raises(ValueError, match="standard prior and the Gaussian posterior; got "
                                       "model.prior='realnvp'"):
    models.create(config.model, SHAPE)


def test_the_singular_value_spectrum_of_gaussian_samples_is_their_scales():
  rng = np.random.default_rng(0)
  scales = np.array([3.0, 1.0, 0.5, 0.1])
  samples = rng.normal(size=(200000, 4)) * scales
  np.testing.assert_allclose(analysis.singular_value_spectrum(samples), scales, rtol=0.01)
