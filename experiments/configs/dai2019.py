r"""Dai & Wipf (2019), "Diagnosing and Enhancing VAE Models": one config per Table 1 entry the library
can run, selected by argument.

  python -m experiments.train --workdir=runs/dai_two_stage_mnist \
      --config=experiments/configs/dai2019.py:two_stage,infogan,mnist \
      --config.data.manual_dir=../shared/data/mnist
  python -m experiments.evaluate --workdir=runs/dai_two_stage_mnist --split=test
  python -m experiments.analyze --workdir=runs/dai_two_stage_mnist

The argument is a comma-separated list of tokens, in any order:
  model    vae_xent (Bernoulli cross-entropy on grey levels) | vae_fixed_gamma (Gaussian, gamma = 1) |
           vae_learned_gamma (Gaussian, one learned gamma) | two_stage (learned gamma, then the
           second-stage VAE on its latents; the default)
  net      infogan (Table 1's neutral architecture; the default) | resnet (Fig. 11) | dense (not the
           paper's: DenseVAE's MLP, 784-500-500-64, with the same Gaussian-gamma decoder; steps of
           milliseconds, so the paper's epoch budget fits a 2-core CPU)
  dataset  mnist (the default) | fashion_mnist | cifar10 | celeb_a
  budget   quickstart (a few CPU minutes) | runlocal (tiny)

Data are grey levels (or colours) in [0, 1], never binarized. Training follows the authors' code
(daib13/TwoStageVAE, `demo.py`): on the whole training split (no validation split is held out:
`data.hold_out_validation=False`), the KL in closed form (`train.kl_estimate=closed_form`; the
paper does not say), Adam at 1e-4, batch 64, no weight decay, no KL warm-up; the first
stage for 400 epochs halved every 150 (MNIST, Fashion), 1,000 / 300 (CIFAR-10), 120 / 48 (CelebA);
the second stage 800 / 300, 2,000 / 600, 300 / 120. The paper says batch 100 and weight decay 5e-4:
`--config.train.batch_size=100 --config.train.l2_reg=5e-4` (the L2 reaches the layers named hidden*,
`methods.objectives.l2_penalty`). Latents: kappa = 64; the second stage's layers are 1,024 wide (2,048 with
the ResNet, as the supplement's runs). docs/dai2019.md lists every choice and where the code and the
paper differ.

The paper's FIDs (Table 1, 10 runs each; lower is better):
              VAE xent   VAE fixed gamma   VAE learned gamma   2-Stage VAE   2-Stage VAE*
  MNIST         23.8          51.2              47.0              13.4          11.2
  Fashion       58.7         104.5              51.5              22.0          21.3
  CIFAR-10     155.7         113.0              80.1              71.0          68.0
  CelebA        85.7         119.8              67.4              45.9          23.8
(2-Stage VAE*: a couple of kappa values tried per dataset.) `config.paper_fid` holds the entry's.
"""

import ml_collections

from vaeprior_jax import config as config_lib

MODELS = ('vae_xent', 'vae_fixed_gamma', 'vae_learned_gamma', 'two_stage')
NETS = {'infogan': 'infogan', 'resnet': 'dai_resnet', 'dense': 'dense'}
DATASETS = ('mnist', 'fashion_mnist', 'cifar10', 'celeb_a')
BUDGETS = ('quickstart', 'runlocal')

PAPER_FID = {
    'mnist': (23.8, 51.2, 47.0, 13.4),
    'fashion_mnist': (58.7, 104.5, 51.5, 22.0),
    'cifar10': (155.7, 113.0, 80.1, 71.0),
    'celeb_a': (85.7, 119.8, 67.4, 45.9),
}

# (first-stage epochs, halved every, second-stage epochs, halved every): the code's demo.py defaults
# for MNIST and Fashion, the supplement's numbers for CIFAR-10 and CelebA.
SCHEDULES = {
    'mnist': (400, 150, 800, 300),
    'fashion_mnist': (400, 150, 800, 300),
    'cifar10': (1000, 300, 2000, 600),
    'celeb_a': (120, 48, 300, 120),
}


def parse(arg: str):
  return config_lib.parse_tokens(arg, {'model': MODELS, 'net': tuple(NETS), 'dataset': DATASETS,
                                       'budget': BUDGETS}, 'dai2019')


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  tokens = parse(arg)
  model = tokens.get('model', 'two_stage')
  net = tokens.get('net', 'infogan')
  dataset = tokens.get('dataset', 'mnist')
  config = config_lib.defaults()  # What the paper does not set: vaeprior_jax/config.py.
  config.entry = arg or 'two_stage,infogan,mnist'
  # The dense net is not the paper's: no paper number.
  config.paper_fid = None if net == 'dense' else PAPER_FID[dataset][MODELS.index(model)]

  m = config.model
  m.net = NETS[net]
  m.prior, m.posterior = 'standard', 'gaussian'
  m.latent_dim = 64                     # kappa
  m.likelihood = 'bernoulli' if model == 'vae_xent' else 'gaussian'
  m.learn_gamma = model != 'vae_fixed_gamma'
  m.log_gamma = 0.0                     # gamma = exp(log_gamma) = 1 at the start (or fixed)
  m.mean_activation = 'sigmoid'         # the decoders end with a sigmoid
  m.two_stage = model == 'two_stage'
  m.second_stage_latent_dim = 0         # 0: kappa
  m.second_stage_units = 2048 if net == 'resnet' else 1024
  m.second_stage_layers = 3
  # The ResNet (Fig. 11): the code's defaults; the README's CelebA command uses base 32, 4 scales.
  m.dai_resnet_base_dim = 32 if dataset == 'celeb_a' else 16
  m.dai_resnet_num_scales = 4           # the code's default and its CelebA command; the paper: 3
                                        # (4 for CelebA)
  m.dai_resnet_blocks_per_scale = 1     # the paper: 2 residual blocks per scale block
  m.dai_resnet_fc_dim = 512
  m.dai_resnet_pooling = 'mean'         # the paper: flatten

  config.data.dataset = dataset
  config.data.binarize = False
  config.data.hold_out_validation = False  # the code trains on all 60k (50k CIFAR-10) images

  first_epochs, first_every, second_epochs, second_every = SCHEDULES[dataset]
  t = config.train
  t.method = 'two_stage' if model == 'two_stage' else 'joint'
  t.batch_size = 64                     # the paper: 100
  t.learning_rate = 1e-4
  t.lr_decay_factor = 0.5
  t.num_epochs = float(first_epochs)
  t.lr_decay_epochs = tuple(float(e) for e in range(first_every, first_epochs, first_every))
  t.second_stage_epochs = float(second_epochs)
  t.second_stage_learning_rate = 1e-4
  t.second_stage_lr_decay_epochs = tuple(float(e) for e in
                                         range(second_every, second_epochs, second_every))
  t.warmup_epochs = 0.0                 # no KL warm-up
  t.kl_estimate = 'closed_form'         # the code's KL; 'sample': the one-sample estimate
  t.l2_reg = 0.0                        # the paper: 5e-4
  t.early_stopping = False
  t.checkpoint_every_steps = 5000
  t.log_every_steps = 500

  config.eval.num_samples = 1000        # the first stage's importance-weighted NLL
  config.eval.batch_size = 100
  config.eval.chunk_size = 100

  budget = tokens.get('budget')
  if budget == 'quickstart':            # Minutes on a CPU: the shape of the curves, not the FIDs.
    t.num_epochs, t.num_steps, t.lr_decay_epochs = -1.0, 1000, ()
    t.second_stage_epochs, t.second_stage_lr_decay_epochs = 5.0, ()
    t.learning_rate = t.second_stage_learning_rate = 1e-3
    t.checkpoint_every_steps, t.log_every_steps = 1000, 200
  elif budget == 'runlocal':            # Seconds: a smoke test of the whole pipeline.
    t.num_epochs, t.num_steps, t.lr_decay_epochs = -1.0, 20, ()
    t.second_stage_epochs, t.second_stage_lr_decay_epochs = 0.05, ()
    t.checkpoint_every_steps, t.log_every_steps = 10, 5
    config.data.validation_size = 1000
    config.eval.num_samples = 10
  # What the paper's FID is for: a run whose settings differ (overrides) reports none.
  config.paper_setting = config_lib.paper_setting(config, (
      'model.learn_gamma', 'model.two_stage'))
  return config
