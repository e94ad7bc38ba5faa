"""The paper configs: one per table entry, each building a valid model with the paper's settings."""

import itertools

import numpy as np
import pytest

from experiments.configs import tomczak2018
from experiments.configs import xu2019
from vaeprior_jax.evaluation import report
from vaeprior_jax import hooks
from vaeprior_jax import methods
from vaeprior_jax.methods import prior_fitting
from vaeprior_jax import models


def _all_entries():
  for net, variant, dataset in itertools.product(xu2019.NETS, ('standard', 'rnvp_posterior',
                                                              'rnvp_prior'), xu2019.DATASETS):
    yield f'table1,{net},{variant},{dataset}'
  for depth, dataset in itertools.product(xu2019.TABLE2, xu2019.DATASETS):
    yield f'table2,k{depth},{dataset}'
  for variant, dataset in itertools.product(xu2019.TABLE3, xu2019.DATASETS):
    yield f'table3,{variant},{dataset}'
  for strategy, dataset in itertools.product(xu2019.TABLE4, xu2019.DATASETS):
    yield f'table4,{strategy},{dataset}'


def test_every_table_entry_builds_a_valid_model():
  entries = list(_all_entries())
  assert len(entries) == 48 + 32 + 12 + 16
  for entry in entries:
    config = xu2019.get_config(entry)
    models.validate(config.model)
    prior_fitting.validate(config)
    models.create(config.model, (28, 28, 1))
    assert config.paper_nll > 70


@pytest.mark.parametrize('entry, expected', [
    ('table1,resnet,rnvp_prior,binarized_mnist',
     dict(net='resnet', prior='realnvp', posterior='gaussian', latent_dim=40, paper_nll=79.99,
          learning_rate=1e-4, lr_decay_epochs=(1600,), early_stopping=True, batch_size=128)),
    ('table1,pixel,standard,omniglot',
     dict(net='pixel', prior='standard', latent_dim=64, paper_nll=89.83, learning_rate=1e-3,
          lr_decay_epochs=(800, 1600), early_stopping=True, batch_size=64)),
    ('tableB3,conv,rnvp_posterior,mnist',
     dict(net='conv', prior='standard', posterior='realnvp', paper_nll=80.09, early_stopping=False)),
    ('table2,k5,fashion_mnist', dict(net='resnet', prior='realnvp', flow_depth=5, latent_dim=64,
                                     paper_nll=224.37)),
    ('table2,k0,binarized_mnist', dict(prior='standard', paper_nll=82.95)),
    ('table3,both,omniglot', dict(prior='realnvp', posterior='realnvp', paper_nll=93.68)),
    ('table4,iterative,binarized_mnist', dict(method='iterative', iterative_iterations=4,
                                              iterative_epochs=400, paper_nll=80.63)),
    ('table4,post_hoc,mnist', dict(method='post_hoc', post_hoc_epochs=3200,
                                   paper_nll=79.90)),
    ('table4,iterative,omniglot', dict(iterative_iterations=16, iterative_epochs=100)),
    ('table4,none,mnist', dict(prior='standard', method='joint', paper_nll=81.07)),
    ('', dict(net='dense', prior='realnvp', paper_nll=84.87, num_epochs=2400)),
    ('quickstart', dict(net='dense', num_steps=5000, early_stopping=False)),
])
def test_entries_carry_the_papers_settings(entry, expected):
  config = xu2019.get_config(entry)
  flat = dict(config.model.items())
  flat.update(config.train.items())
  flat['paper_nll'] = config.paper_nll
  for key, value in expected.items():
    assert flat[key] == (tuple(value) if isinstance(value, tuple) else value), key


@pytest.mark.parametrize('arg, message', [
    ('table9', "Unknown xu2019 config token 'table9'; allowed: table: table1"),
    ('table1,dense,conv', "Two net tokens"),
    ('table4,dense,joint', "table4 is about ResnetVAE; got net 'dense'"),
    ('table1,k5', 'table1 entries take no depth token'),
    ('table3,standard', "table3 has no variant 'standard'; allowed: rnvp_posterior, rnvp_prior, both"),
])
def test_bad_arguments_are_named(arg, message):
  with pytest.raises(ValueError, match=message):
    xu2019.get_config(arg)


def test_the_papers_number_is_reported_only_for_the_entry_as_configured():
  config = xu2019.get_config('table2,k5,mnist')
  assert report.paper_nll(config) == 79.09
  config.model.flow_depth = 10  # An override: another model than the entry's.
  assert report.paper_nll(config) is None
  assert report.paper_nll(xu2019.get_config('table4,none,omniglot')) == 96.99
  assert report.paper_nll(xu2019.get_config('table2,k0,omniglot')) == 96.99
  overridden = xu2019.get_config('runlocal')
  overridden.model.prior = 'vampprior'
  assert report.paper_nll(overridden) is None
  # Every paper's number is for its likelihood and its binarization too.
  for entry in (lambda: tomczak2018.get_config('table1,vae,standard,mnist'),
                lambda: xu2019.get_config('table2,k5,mnist')):
    assert report.paper_nll(entry()) is not None
    config = entry()
    config.model.likelihood = 'discretized_logistic'
    assert report.paper_nll(config) is None
    config = entry()
    config.data.binarize = False
    assert report.paper_nll(config) is None


# ------------------------------------------------------------------------ Tomczak & Welling (2018)

def _tomczak_entries():
  for (net, prior), dataset in itertools.product(tomczak2018.TABLE1, tomczak2018.DATASETS):
    yield f'table1,{net},{prior},{dataset}'
  for table, entries in tomczak2018.TABLES_2_TO_4.items():
    for net, prior in entries:
      yield f'{table},{net},{prior}'


def test_every_tomczak_entry_builds_a_valid_model():
  entries = list(_tomczak_entries())
  assert len(entries) == 24 + 6 + 4 + 3
  for entry in entries:
    config = tomczak2018.get_config(entry)
    models.validate(config.model)
    prior_fitting.validate(config)
    models.create(config.model, (28, 28, 1))
    assert 78 < config.paper_nll < 110
    assert report.paper_nll(config) == config.paper_nll


@pytest.mark.parametrize('entry, expected', [
    ('', dict(net='hvae', prior='vampprior', latent_dim=40, z1_dim=40, num_components=500,
              paper_nll=83.19, batch_size=100, learning_rate=5e-4, warmup_epochs=100,
              num_epochs=2000, normalize_gradients=True, early_stopping_metric='elbo',
              eval_every_epochs=1, early_stopping_patience_epochs=50, l2_reg=0.0)),
    ('table1,vae,standard,binarized_mnist', dict(net='gated_mlp', prior='standard', paper_nll=88.56)),
    ('table1,vae,vampprior', dict(net='gated_mlp', prior='vampprior', paper_nll=85.57)),
    ('table1,pixelhvae,vampprior,omniglot', dict(net='pixelhvae', num_components=1000,
                                                 validation_size=1345, paper_nll=89.76)),
    ('table2,hvae,mog', dict(prior='mog', dataset='binarized_mnist', paper_nll=85.07)),
    ('table3,hvae,vampprior_data,lr1e-4', dict(prior='vampprior_data', dataset='mnist',
                                               learning_rate=1e-4, test_binarizations=1,
                                               paper_nll=81.71)),
    ('table4,convhvae,vampprior', dict(net='convhvae', dataset='omniglot', paper_nll=97.56)),
])
def test_tomczak_entries_carry_the_papers_settings(entry, expected):
  config = tomczak2018.get_config(entry)
  flat = dict(config.model.items())
  flat.update(config.train.items())
  flat.update(config.data.items())
  flat['paper_nll'] = config.paper_nll
  for key, value in expected.items():
    assert flat[key] == value, key


@pytest.mark.parametrize('arg, message', [
    ('table9', "Unknown tomczak2018 config token 'table9'; allowed: table: table1"),
    ('hvae,convhvae', 'Two net tokens'),
    ('table1,hvae,mog', 'table1 has no entry hvae,mog'),
    ('table2,vae,vampprior', r'table2 has no entry vae,vampprior; its entries: hvae,standard'),
    ('table3,omniglot', "table3 is about mnist; got dataset 'omniglot'"),
])
def test_bad_tomczak_arguments_are_named(arg, message):
  with pytest.raises(ValueError, match=message):
    tomczak2018.get_config(arg)


def test_two_level_models_refuse_what_they_do_not_support():
  config = tomczak2018.get_config('runlocal,hvae,standard')
  config.model.posterior = 'realnvp'
  with pytest.raises(ValueError, match='model.net=hvae has Gaussian posteriors'):
    models.validate(config.model)
  config = tomczak2018.get_config('runlocal,table2,hvae,mog')
  config.train.method = 'post_hoc'
  with pytest.raises(ValueError, match='is for one-level VAEs; model.net=hvae'):
    prior_fitting.validate(config)


def test_every_dai2019_entry_builds_a_valid_model_with_the_codes_settings():
  from experiments.configs import dai2019  # pylint: disable=g-import-not-at-top
  shapes = {'mnist': (28, 28, 1), 'fashion_mnist': (28, 28, 1), 'cifar10': (32, 32, 3),
            'celeb_a': (64, 64, 3)}
  for model, net, dataset in itertools.product(dai2019.MODELS, dai2019.NETS, dai2019.DATASETS):
    config = dai2019.get_config(f'{model},{net},{dataset}')
    methods.validate(config)
    built = models.create(config.model, shapes[dataset])
    assert config.data.binarize is False and config.train.batch_size == 64
    assert (model == 'two_stage') == (config.train.method == 'two_stage') == hasattr(built, 'second')
    expected = None if net == 'dense' else dai2019.PAPER_FID[dataset][dai2019.MODELS.index(model)]
    assert config.paper_fid == expected  # (The dense net is not the paper's.)
    assert config.train.kl_estimate == 'closed_form' and not config.data.hold_out_validation
  config = dai2019.get_config('')
  assert (config.model.net, config.model.likelihood, config.model.learn_gamma) == (
      'infogan', 'gaussian', True)
  assert config.train.lr_decay_epochs == (150.0, 300.0)
  assert config.train.second_stage_lr_decay_epochs == (300.0, 600.0)
  assert dai2019.get_config('vae_fixed_gamma').model.learn_gamma is False
  assert dai2019.get_config('vae_xent').model.likelihood == 'bernoulli'
  with pytest.raises(ValueError, match="Unknown dai2019 config token 'wae'"):
    dai2019.get_config('wae')


def test_every_vaepp_entry_builds_a_valid_model_with_the_codes_settings():
  from experiments.configs import vaepp  # pylint: disable=g-import-not-at-top
  for method, dataset, penalty in itertools.product(vaepp.METHODS, vaepp.DATASETS, vaepp.PENALTIES):
    config = vaepp.get_config(f'{method},{dataset},{penalty}')
    methods.validate(config)
    models.create(config.model, (28, 28, 1))
    name, latent_dim, weight, _, _ = vaepp.DATASETS[dataset]
    assert (config.data.dataset, config.model.latent_dim) == (name, latent_dim)
    assert config.model.pullback_weight == weight and config.train.batch_size == 128
    grey = dataset != 'static_mnist'  # The code: q(z|e) of the grey image, trained on e itself.
    assert (config.data.binarize, config.eval.proposal_input) == (not grey,
                                                                  'grey' if grey else 'target')
    expected = None
    if method != 'standard' and penalty == 'div1':
      expected = vaepp.PAPER_NLL[dataset][('naive', 'vaepp', 'flow').index(method)]
    assert config.paper_nll == expected
  config = vaepp.get_config('')
  assert (config.model.prior, config.model.posterior, config.train.method) == (
      'pullback', 'truncated_gaussian', 'vaepp')
  assert (config.data.dataset, config.model.latent_dim, config.model.vaepp_min_log_std) == (
      'binarized_mnist', 12, -3.0)
  assert config.train.lr_decay_epochs[:2] == (200.0, 400.0)
  assert vaepp.get_config('naive').train.method == 'vaepp_naive'
  flow = vaepp.get_config('flow').model  # The code's 20 planar layers over the truncated normal.
  assert (flow.posterior, flow.planar_layers, flow.planar_base_truncation) == ('planar', 20, 2.0)
  assert vaepp.get_config('flow,cifar10').model.planar_base_truncation == 0.0
  assert vaepp.get_config('standard').model.prior == 'standard'
  with pytest.raises(ValueError, match="Unknown vaepp config token 'svhn'"):
    vaepp.get_config('svhn')
  # The colour entries: the code's nets, latent sizes and log-scales; its |grad_u D|^6 penalty in
  # our coordinates (weight 2 (128/255)^6); the paper's CIFAR-10 bits/dim per method and penalty.
  shapes = {'cifar10': (32, 32, 3), 'celeb_a': (64, 64, 3)}
  for method, dataset, penalty in itertools.product(vaepp.METHODS, vaepp.COLOUR, vaepp.PENALTIES):
    config = vaepp.get_config(f'{method},{dataset},{penalty}')
    methods.validate(config)
    models.create(config.model, shapes[config.data.dataset])
    name, net, latent_dim, scale = vaepp.COLOUR[dataset][:4]
    assert (config.data.dataset, config.model.net, config.model.latent_dim) == (name, net, latent_dim)
    assert config.model.likelihood == 'discretized_logistic' and config.model.logistic_scale == scale
    assert config.data.binarize is False and config.model.pullback_weight == 1000.0
    if penalty != 'gp':
      assert config.train.gradient_penalty_exponent == 6.0
      assert config.train.gradient_penalty_weight == pytest.approx(2.0 * (128 / 255) ** 6)
    # The latent WGAN's penalty keeps the kind's weight (2 for WGAN-div): no change of coordinates.
    assert config.train.latent_gan_penalty_weight == 0.0
    # q(z|x): the plain normal of the colour scripts (flows: the code's planar layers on it); the
    # latent WGAN's real latents are samples in dmm_cifar10.py, posterior means elsewhere (its
    # Algorithm 1 script dmm_cifar10_nD.py included).
    assert config.model.posterior == ('planar' if method == 'flow' else 'gaussian')
    nd = method == 'naive' and dataset == 'cifar10'
    assert config.train.latent_gan_real == (
        'sample' if method == 'flow' or (dataset == 'cifar10' and not nd) else 'mean')
    # dmm_cifar10_nD.py: R without W, one latent critic step per generator step, a latent critic
    # ending on the 4x4 map; every Algorithm 1 script: no L2 in D's own step.
    assert (config.train.vaepp_penalty_scale, config.train.latent_gan_critic_steps,
            config.model.latent_gan_net) == (('one', 1, 'conv_4x4') if nd else ('weight', 5, 'conv'))
    assert config.train.vaepp_naive_critic_l2 is False
    expected = None
    if dataset == 'cifar10' and method != 'standard':
      expected = vaepp.PAPER_BITS_PER_DIM[penalty][('naive', 'vaepp', 'flow').index(method)]
    assert config.paper_bits_per_dim == expected and config.paper_nll is None


@pytest.mark.parametrize('key, value, message', [
    ('num_steps', -5, r'train.num_steps must be >= 1, or -1 .*got -5'),
    ('batch_size', 0, 'train.batch_size must be an integer >= 1, got 0'),
    ('learning_rate', -1.0, r'train.learning_rate must be > 0, got -1.0'),
    ('log_every_steps', 0, 'train.log_every_steps must be an integer >= 1, got 0'),
    ('device_chunk_steps', 0, 'train.device_chunk_steps must be an integer >= 1, got 0'),
])
def test_bad_train_values_are_named_before_any_data_is_loaded(key, value, message):
  config = xu2019.get_config('runlocal')
  config.train[key] = value
  with pytest.raises(ValueError, match=message):
    methods.validate(config)


@pytest.mark.parametrize('kwargs, message', [
    (dict(num_samples=0), 'num_samples must be an integer >= 1 .*got 0'),
    (dict(max_examples=-3), 'max_examples must be an integer >= 1 .*got -3'),
])
def test_bad_evaluation_arguments_are_named_before_the_workdir_is_read(kwargs, message):
  with pytest.raises(ValueError, match=message):
    report.evaluate('/nonexistent/workdir', **kwargs)


def test_an_evaluation_on_a_subset_has_a_file_of_its_own():
  assert report.result_path('w', 'test').endswith('w/eval_test.json')
  assert report.result_path('w', 'test', 20, 3).endswith('w/eval_test_subset20_seed3.json')


def test_fid_reference_statistics_are_cached_per_protocol(tmp_path):
  calls = []

  def compute(value):
    calls.append(value)
    return np.full(2, value), np.eye(2) * value

  folder = str(tmp_path)
  protocols = {name: hooks.QUALITY_PROTOCOLS.get(name) for name in hooks.QUALITY_PROTOCOLS}
  paths = {name: report.reference_cache_path(folder, 'mnist', p.reference_split, p.num_reference, 0,
                                             'abc') for name, p in protocols.items()}
  paths['other_weights'] = report.reference_cache_path(folder, 'mnist', 'test', 10000, 0, 'def')
  assert len(set(paths.values())) == 3  # Each protocol (and each weights file) has its own.
  for value, path in enumerate(paths.values(), 1):
    mean, _ = report.cached_statistics(path, lambda v=value: compute(v))
    again, _ = report.cached_statistics(path, lambda: compute(-1))  # Reused, not recomputed.
    np.testing.assert_array_equal(mean, again)
  assert calls == [1, 2, 3]


def test_the_leaderboard_entries_differ_only_in_the_prior_and_its_own_training():
  """compare_priors.py: one net, dataset, budget and estimator for every prior; the pull-back
  prior adds VAEPP's training and log Z settings (and its dense critic), nothing else."""
  from experiments.configs import compare_priors  # pylint: disable=g-import-not-at-top
  from vaeprior_jax import config as config_lib  # pylint: disable=g-import-not-at-top

  def flat(config, prefix=''):
    out = {}
    for key, value in config.items():
      if hasattr(value, 'items'):
        out.update(flat(value, f'{prefix}{key}.'))
      else:
        out[f'{prefix}{key}'] = value
    return out

  for budget in ('', ',quickstart', ',runlocal'):
    configs = {p: config_lib.complete(compare_priors.get_config(p + budget))
               for p in compare_priors.PRIORS}
    for prior, config in configs.items():
      config_lib.check_types(config)
      methods.validate(config)
      models.create(config.model, (28, 28, 1))
      for h in report.evaluation_hooks(config):  # The evaluation's settings, as evaluate checks.
        h.check_config(config)
      assert config.model.prior == prior and config.paper_nll is None
    reference = flat(configs['standard'])
    for prior, config in configs.items():
      differ = {k for k, v in flat(config).items() if reference.get(k) != v}
      differ -= {'entry', 'model.prior', 'paper_setting.model.prior'}
      if prior == 'pullback':
        assert differ and all(k.startswith(('model.pullback_', 'model.discriminator',
                                            'train.', 'eval.log_z_', 'paper_setting.train.'))
                              for k in differ), sorted(differ)
        assert not any(k.startswith(('train.num_', 'train.learning_rate', 'train.lr_',
                                     'train.batch_size', 'train.warmup')) for k in differ)
      else:
        assert not differ, (prior, sorted(differ))
  board = compare_priors.get_config('pullback')
  assert (board.model.net, board.data.dataset, board.model.latent_dim) == (
      'dense', 'binarized_mnist', 40)
  assert (board.train.num_epochs, board.train.lr_decay_epochs, board.train.early_stopping) == (
      100.0, (70.0,), False)
  assert (board.eval.num_samples, board.model.num_components) == (1000, 500)
  assert (board.model.discriminator, board.train.method, board.train.latent_gan_epochs) == (
      'dense', 'vaepp', 0.0)
  assert board.eval.log_z_ais_temperatures > 0 and board.eval.log_z_max_images == 0
  with pytest.raises(ValueError, match="Unknown compare_priors config token 'flow'"):
    compare_priors.get_config('flow')


@pytest.mark.parametrize('key, value, message', [
    ('log_z_ais_sampler_steps', 10, r'eval.log_z_ais_\*: AIS sampler_steps \(10\) must be at least'),
    ('log_z_ais_chains', 1, r'eval.log_z_ais_\*: AIS needs num_chains >= 2'),
    ('log_z_ais_temperatures', -1, r'eval.log_z_ais_temperatures must be an integer >= 0, got -1'),
    ('log_z_samples', 0, r'eval.log_z_samples must be an integer >= 1, got 0'),
])
def test_bad_pullback_evaluation_settings_are_one_line_errors_before_any_data(key, value, message):
  from experiments.configs import vaepp  # pylint: disable=g-import-not-at-top
  config = vaepp.get_config('runlocal')
  config.eval.log_z_ais_temperatures = 10
  config.eval[key] = value
  with pytest.raises(ValueError, match=message):
    for h in report.evaluation_hooks(config):
      h.check_config(config)
