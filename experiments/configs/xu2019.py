r"""Xu et al. (2019), "On the Necessity and Effectiveness of Learning the Prior of VAE": one config per
entry of Tables 1, 2, 3, 4 and B.3, selected by argument.

  python -m experiments.train --workdir=runs/t1_resnet_prior_static \
      --config=experiments/configs/xu2019.py:table1,resnet,rnvp_prior,binarized_mnist \
      --config.data.manual_dir=../shared/data/binarized_mnist
  python -m experiments.evaluate --workdir=runs/t1_resnet_prior_static --num_samples=1000 --split=test

The argument is a comma-separated list of tokens, in any order:
  table      table1 | tableB3 (Table 1 with ConvVAE: the same entries) | table2 | table3 | table4
  net        dense | conv | resnet | pixel          (table2-4: resnet, the default)
  variant    table1/B3: standard | rnvp_posterior | rnvp_prior;  table3: rnvp_posterior | rnvp_prior | both
  depth      table2: k0 | k1 | k2 | k5 | k10 | k20 | k30 | k50   (k0 = the standard prior)
  strategy   table4: joint | iterative | post_hoc | none  (post_hoc / iterative train the standard VAE
             first in workdir/pretrain; pass --config.train.init_from=DIR to reuse a trained one, e.g.
             the workdir of the `none` entry)
  dataset    binarized_mnist (StaticMNIST) | mnist | fashion_mnist | omniglot
  budget     quickstart (a few CPU minutes: 5,000 steps, lr 1e-3, no early stopping) | runlocal (tiny)
No argument: table1,dense,rnvp_prior,binarized_mnist. `config.paper_nll` holds the paper's test NLL of
the entry (nats, 1,000 samples, mean of 3 runs), logged by train and written by evaluate when no
override changed the entry's model, dataset or strategy.

The paper's protocol (App. B.3), applied per entry: 2,400 epochs; Adam at 1e-3 / 1e-4 / 1e-5 over thirds
(StaticMNIST: 1e-4 for 1,600 epochs, then 1e-5); batch 128 (PixelVAE 64); L2 1e-4; KL warm-up over 100
epochs; latent size 40 (StaticMNIST, MNIST) or 64 (FashionMNIST, Omniglot); flow depth K = 20; early
stopping on the 100-sample validation NLL every 20 epochs for StaticMNIST and PixelVAE. Post-hoc: 3,200
prior epochs (1e-3, then 1e-4); iterative: I = 4, M = 400 on StaticMNIST, I = 16, M = 100 elsewhere.

The paper's test NLLs (StaticMNIST, MNIST, FashionMNIST, Omniglot):
  Table 1 / B.3   standard                       RNVP q(z|x)                    RNVP p(z)
    DenseVAE      88.84  84.48 228.60 106.42     86.07  82.53 227.79 102.97     84.87  80.43 226.11 102.19
    ConvVAE       83.63  82.14 227.51  97.87     81.11  80.09 226.03  94.90     80.06  78.67 224.65  93.68
    ResnetVAE     82.95  81.07 226.17  96.99     80.97  79.53 225.02  94.30     79.99  78.58 224.09  93.61
    PixelVAE      79.47  78.64 224.22  89.83     79.09  78.41 223.81  89.69     78.92  78.15 223.40  89.61
  Table 2 (ResnetVAE + RNVP p(z), depth K)
    K = 0 82.95 81.07 226.17 96.99 | 1 81.76 80.02 225.27 96.20 | 2 81.30 79.58 224.78 95.35
    K = 5 80.64 79.09 224.37 94.47 | 10 80.26 78.75 224.18 93.92 | 20 79.99 78.58 224.09 93.61
    K = 30 79.90 78.52 224.07 93.53 | 50 79.84 78.49 224.07 93.52
  Table 3 (ResnetVAE)  both: 79.87 78.56 224.08 93.68  (RNVP q(z|x), RNVP p(z): as Table 1)
  Table 4 (ResnetVAE)  joint 79.99 78.58 224.09 93.61 | iterative 80.63 79.61 224.88 94.43 |
                       post-hoc 80.86 79.90 225.22 94.87 | none 82.95 81.07 226.17 96.99
"""

import ml_collections

from vaeprior_jax import config as config_lib


DATASETS = ('binarized_mnist', 'mnist', 'fashion_mnist', 'omniglot')
_N = lambda *v: dict(zip(DATASETS, v))
TABLE1 = {
    ('dense', 'standard'): _N(88.84, 84.48, 228.60, 106.42),
    ('dense', 'rnvp_posterior'): _N(86.07, 82.53, 227.79, 102.97),
    ('dense', 'rnvp_prior'): _N(84.87, 80.43, 226.11, 102.19),
    ('conv', 'standard'): _N(83.63, 82.14, 227.51, 97.87),
    ('conv', 'rnvp_posterior'): _N(81.11, 80.09, 226.03, 94.90),
    ('conv', 'rnvp_prior'): _N(80.06, 78.67, 224.65, 93.68),
    ('resnet', 'standard'): _N(82.95, 81.07, 226.17, 96.99),
    ('resnet', 'rnvp_posterior'): _N(80.97, 79.53, 225.02, 94.30),
    ('resnet', 'rnvp_prior'): _N(79.99, 78.58, 224.09, 93.61),
    ('pixel', 'standard'): _N(79.47, 78.64, 224.22, 89.83),
    ('pixel', 'rnvp_posterior'): _N(79.09, 78.41, 223.81, 89.69),
    ('pixel', 'rnvp_prior'): _N(78.92, 78.15, 223.40, 89.61),
}
TABLE2 = {
    0: _N(82.95, 81.07, 226.17, 96.99), 1: _N(81.76, 80.02, 225.27, 96.20),
    2: _N(81.30, 79.58, 224.78, 95.35), 5: _N(80.64, 79.09, 224.37, 94.47),
    10: _N(80.26, 78.75, 224.18, 93.92), 20: _N(79.99, 78.58, 224.09, 93.61),
    30: _N(79.90, 78.52, 224.07, 93.53), 50: _N(79.84, 78.49, 224.07, 93.52),
}
TABLE3 = {'rnvp_posterior': TABLE1[('resnet', 'rnvp_posterior')],
          'rnvp_prior': TABLE1[('resnet', 'rnvp_prior')],
          'both': _N(79.87, 78.56, 224.08, 93.68)}
TABLE4 = {'joint': _N(79.99, 78.58, 224.09, 93.61), 'iterative': _N(80.63, 79.61, 224.88, 94.43),
          'post_hoc': _N(80.86, 79.90, 225.22, 94.87), 'none': _N(82.95, 81.07, 226.17, 96.99)}
TABLES = ('table1', 'tableB3', 'table2', 'table3', 'table4')
NETS = ('dense', 'conv', 'resnet', 'pixel')
# Importance samples per vmapped chunk of the estimator, per net: XLA's buffers for one batch of 128 grow
# as chunk x batch, so these keep every net under 2 GiB (benchmarks/LOG.md, "Memory of the
# estimator": chunk 100 takes 0.12 GiB for DenseVAE, 2.4 GiB for ConvVAE, 3.6 GiB for ResnetVAE with
# K = 50 and 23.6 GiB for PixelVAE). Raise eval.chunk_size on a large accelerator for speed.
EVAL_CHUNK_SIZES = {'dense': 100, 'conv': 50, 'resnet': 50, 'pixel': 5}
VARIANTS = ('standard', 'rnvp_posterior', 'rnvp_prior', 'both')
STRATEGIES = ('joint', 'iterative', 'post_hoc', 'none')
BUDGETS = ('quickstart', 'runlocal')
# Which prior / posterior each variant uses.
_VARIANT_MODEL = {'standard': ('standard', 'gaussian'), 'rnvp_posterior': ('standard', 'realnvp'),
                  'rnvp_prior': ('realnvp', 'gaussian'), 'both': ('realnvp', 'realnvp')}


def parse(arg: str):
  """Splits the config argument into {'table', 'net', 'variant', 'depth', 'strategy', 'dataset',
  'budget'}; raises ValueError naming a bad or conflicting token and what is allowed."""
  choices = {'table': TABLES, 'net': NETS, 'variant': VARIANTS, 'strategy': STRATEGIES,
             'dataset': DATASETS, 'budget': BUDGETS,
             'depth': tuple(f'k{k}' for k in TABLE2)}
  return config_lib.parse_tokens(arg, choices, 'xu2019')


def _entry(tokens):
  """(net, prior, posterior, flow_depth, strategy, paper_nll) of the selected table entry."""
  table = tokens.get('table', 'table1')
  dataset = tokens.get('dataset', 'binarized_mnist')
  net = tokens.get('net', 'dense' if table in ('table1', 'tableB3') else 'resnet')
  if table in ('table1', 'tableB3'):
    variant = tokens.get('variant', 'rnvp_prior')
    if (net, variant) not in TABLE1:
      raise ValueError(f'{table} has no entry {net},{variant}; variants: standard, rnvp_posterior, '
                       'rnvp_prior.')
    if net == 'conv' and table == 'table1':
      table = 'tableB3'
    extra = [k for k in ('depth', 'strategy') if k in tokens]
    prior, posterior = _VARIANT_MODEL[variant]
    result = (net, prior, posterior, 20, 'joint', TABLE1[(net, variant)][dataset])
  elif table == 'table2':
    depth = int(tokens.get('depth', 'k20')[1:])
    extra = [k for k in ('variant', 'strategy') if k in tokens]
    result = (net, 'realnvp' if depth else 'standard', 'gaussian', max(depth, 1), 'joint',
              TABLE2[depth][dataset])
  elif table == 'table3':
    variant = tokens.get('variant', 'both')
    if variant not in TABLE3:
      raise ValueError(f'table3 has no variant {variant!r}; allowed: {", ".join(TABLE3)}.')
    extra = [k for k in ('depth', 'strategy') if k in tokens]
    prior, posterior = _VARIANT_MODEL[variant]
    result = (net, prior, posterior, 20, 'joint', TABLE3[variant][dataset])
  else:
    strategy = tokens.get('strategy', 'joint')
    extra = [k for k in ('depth', 'variant') if k in tokens]
    prior = 'standard' if strategy == 'none' else 'realnvp'
    result = (net, prior, 'gaussian', 20, 'joint' if strategy == 'none' else strategy,
              TABLE4[strategy][dataset])
  if extra:
    raise ValueError(f'{table} entries take no {" / ".join(extra)} token.')
  if table in ('table2', 'table3', 'table4') and net != 'resnet':
    raise ValueError(f'{table} is about ResnetVAE; got net {net!r}.')
  return result


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  tokens = parse(arg)
  net, prior, posterior, depth, strategy, paper_nll = _entry(tokens)
  dataset = tokens.get('dataset', 'binarized_mnist')
  static = dataset == 'binarized_mnist'
  config = config_lib.defaults()  # What the paper does not set: vaeprior_jax/config.py.
  config.entry = arg or 'table1,dense,rnvp_prior,binarized_mnist'
  config.paper_nll = paper_nll

  config.model.net = net                  # dense | conv | resnet | pixel
  config.model.prior = prior              # standard | realnvp | mog | vampprior | vampprior_data
  config.model.num_components = 500       # mog components / VampPrior pseudo-inputs
  config.model.pseudo_inputs_from_data = False  # vampprior: start the pseudo-inputs at training images
  config.model.posterior = posterior      # gaussian | realnvp
  config.model.latent_dim = 40 if dataset in ('binarized_mnist', 'mnist') else 64
  config.model.flow_depth = depth         # K, RealNVP blocks
  config.model.coupling_scale_bias = 2.0  # scale = sigmoid(s + 2): each coupling starts near identity
  config.model.negative_slope = 0.2       # leaky ReLU, TensorFlow's default

  # binarized_mnist | mnist | fashion_mnist | omniglot (Burda et al.'s 28x28 chardata.mat, not tfds'
  # 105x105 omniglot) | cifar10 | celeb_a (colour, [0, 1]: for the Gaussian-decoder models to come)
  config.data.dataset = dataset
  # mnist / fashion_mnist / omniglot (App. B.1): validation carved from the training images (0 = the
  # dataset's default: 10,000; 4,000 for Omniglot; 5,000 for CIFAR-10), test set binarized 10 times
  # with a fixed seed; ignored by binarized_mnist and celeb_a, which have their own splits.
  config.data.validation_size = 0
  config.data.split_seed = 0
  config.data.test_binarizations = 10
  config.data.test_binarization_seed = 0

  config.train.num_epochs = 2400.0
  config.train.num_steps = -1             # > 0 overrides num_epochs
  config.train.batch_size = 64 if net == 'pixel' else 128
  # StaticMNIST: 1e-4, then 1e-5 after epoch 1,600; elsewhere 1e-3 / 1e-4 / 1e-5 over thirds.
  config.train.learning_rate = 1e-4 if static else 1e-3
  config.train.lr_decay_epochs = (1600,) if static else (800, 1600)
  config.train.lr_decay_factor = 0.1
  config.train.warmup_epochs = 100.0      # beta: 0.01 -> 1 linearly
  config.train.beta_start = 0.01
  config.train.l2_reg = 1e-4              # on kernels of non-linear layers
  config.train.checkpoint_every_steps = 5000
  config.train.max_checkpoints_to_keep = 3
  config.train.log_every_steps = 500
  # Early stopping on validation NLL (App. B.3: StaticMNIST and PixelVAE): every eval_every_epochs,
  # the state with the best validation NLL is kept in workdir/best; `evaluate` uses it.
  config.train.early_stopping = static or net == 'pixel'  # App. B.3: StaticMNIST and PixelVAE
  config.train.eval_every_epochs = 20.0
  config.train.early_stopping_num_samples = 100
  config.train.early_stopping_patience_epochs = 0.0  # > 0: stop after this many epochs without a best
  # How the prior is trained (Sec. 3, App. B.3; see vaeprior_jax/methods/prior_fitting.py): joint | post_hoc |
  # iterative. post_hoc and iterative start from the standard VAE trained in init_from ('' = train it
  # first in workdir/pretrain, with the settings above).
  config.train.method = strategy
  config.train.init_from = ''
  config.train.post_hoc_epochs = 3200.0
  config.train.prior_learning_rates = (1e-3, 1e-4)  # post-hoc halves; iterative 1b's two M-epoch parts
  config.train.iterative_iterations = 4 if static else 16  # I
  config.train.iterative_epochs = 400.0 if static else 100.0  # M
  config.train.iterative_learning_rate = 1e-4
  config.train.qz_regularizer = False     # Reg[q(z)] of App. B.3

  config.eval.num_samples = 1000
  config.eval.chunk_size = EVAL_CHUNK_SIZES[net]  # samples per vmapped chunk; memory ~ chunk x batch
  config.eval.batch_size = 128            # test examples per compiled call
  config.eval.active_units_samples = 1000

  budget = tokens.get('budget')
  if budget == 'quickstart':
    config.train.num_epochs = -1.0
    config.train.num_steps = 5000
    config.train.learning_rate = 1e-3
    config.train.lr_decay_epochs = ()
    config.train.warmup_epochs = 2.0
    config.train.checkpoint_every_steps = 1000
    config.train.log_every_steps = 250
    config.train.early_stopping = False
  elif budget == 'runlocal':
    config.model.latent_dim = 4
    config.model.flow_depth = 2
    config.model.flow_hidden_units = 16
    config.train.num_steps = 20
    config.train.batch_size = 8
    config.train.learning_rate = 1e-3
    config.train.warmup_epochs = 1.0
    config.train.checkpoint_every_steps = 10
    config.train.log_every_steps = 5
    config.train.early_stopping = False
    config.train.eval_every_epochs = 1.0
    config.train.early_stopping_num_samples = 5
    config.eval.num_samples = 10
    config.eval.chunk_size = 4
    config.eval.batch_size = 8
    config.eval.active_units_samples = 10
    config.eval.active_units_batch_size = 1000  # the 50,000 training images in 50 calls
    config.train.post_hoc_epochs = 1.0
    config.train.iterative_iterations = 2
    config.train.iterative_epochs = 0.5
  # What the paper's number is for: a run whose settings differ (overrides) reports no paper number.
  config.paper_setting = config_lib.paper_setting(
      config, ('model.flow_depth',) if 'realnvp' in (prior, posterior) else ())
  return config
