r"""VAEPP (Chen et al., "VAEPP: Variational Autoencoder with a Pull-back Prior"): one config per entry
of Tables 1-2 the library can run (the 28x28 datasets), selected by argument.

  python -m experiments.train --workdir=runs/vaepp_static \
      --config=experiments/configs/vaepp.py:vaepp,static_mnist \
      --config.data.manual_dir=../shared/data/binarized_mnist
  python -m experiments.evaluate --workdir=runs/vaepp_static --split=test --sample_quality

The argument is a comma-separated list of tokens, in any order:
  method   vaepp (Algorithm 2; the default) | naive (Algorithm 1) | flow (VAEPP + Flow: 20 planar
           layers on q, as the code) | standard (the same nets and budget with the standard normal
           prior and no critic: the baseline)
  dataset  static_mnist (the default) | mnist (dynamic) | fashion_mnist | omniglot | cifar10 (the
           NLL model of Tables 1 and 3: latent 1,024, per-pixel log-scales) | cifar10_sampling,
           celeb_a (the FID model of Table 4: latent 128, one learned log-scale)
  penalty  div1 (WGAN-div on interpolates; the default) | div2 (WGAN-div at real and fake points) |
           gp (WGAN-GP)
  budget   quickstart (tens of CPU minutes) | runlocal (tiny)

Settings are the authors' code's (chenwenxiao/adversarial-prior-vae, code/experiment/dmm/
dmm_bernouli*.py): the residual encoder, decoder and critic of `vaeprior_jax.nets.vaepp_nets` (16/32/64
channels), batch 128, Adam 1e-4 halved every 200 epochs, L2 2e-4 on the residual blocks, 1,000 VAE
epochs then 1,000 epochs of the latent WGAN (5 critic steps per generator step), q(z|x) a normal
truncated at 2 sigma, log-std clipped below, 128 prior draws per step, W and the latent size per
dataset (`DATASETS`), MALA from the latent WGAN's samples (2,020 steps of the dataset's size), log Z
from 1,000 samples per training image. docs/vaepp.md lists them with their sources and where the
paper and the code differ.

The paper's test NLLs (nats; Table 1: MNIST, Table 2: the others):
                   naive    vaepp    +flow
  static_mnist     78.06    77.73    77.66
  mnist            76.49    76.37    76.23
  fashion_mnist   214.63   213.24   213.19
  omniglot         90.72    89.60    89.24
`config.paper_nll` holds the entry's (None for the standard baseline and the non-default penalties,
which the paper reports on CIFAR-10 only, Table 3).

CIFAR-10 (`config.paper_bits_per_dim`: naive 3.15, vaepp 2.91, flow 2.84 with div1; Table 3: gp
3.15 / 2.95, div2 4.47 / 2.99) and CelebA: the code's `dmm_cifar10.py` and `dmm_for_sampling.py`
settings (W = 1,000, the nets of `vaepp_nets`, 10 importance samples for log Z and the NLL). Our
CIFAR-10 carves 5,000 validation images out of the 50,000 (the code trains on all of them); CelebA
uses the library's crop, not the code's (docs/vaepp.md).

MNIST, Fashion-MNIST and Omniglot train as the code does: the encoder reads the grey image e and
the likelihood scores e itself; the test NLL is that of the binarized test images (the same 10
binarizations as the library's other runs) with the proposal q(z|e) (`eval.proposal_input=grey`).
The paper also reports q(z|x) (trained on binarized images): `--config.data.binarize=True
--config.eval.proposal_input=target`.
"""

import ml_collections

from vaeprior_jax import config as config_lib

METHODS = ('vaepp', 'naive', 'flow', 'standard')
PENALTIES = {'div1': 'wgan_div_1', 'div2': 'wgan_div_2', 'gp': 'wgan_gp'}
BUDGETS = ('quickstart', 'runlocal')

# dataset token: (data.dataset, latent size, W, MALA step size, min log-std of q), the code's.
DATASETS = {
    'static_mnist': ('binarized_mnist', 12, 10.0, 5e-5, -3.0),
    'mnist': ('mnist', 13, 10.0, 1e-5, -5.0),
    'fashion_mnist': ('fashion_mnist', 40, 20.0, 5e-6, -5.0),
    'omniglot': ('omniglot', 24, 10.0, 5e-5, -5.0),
}

# Colour tokens (8-bit images, the discretized logistic), the code's `dmm_cifar10.py` (the NLL model
# of Tables 1 and 3) and `dmm_for_sampling.py` (the FID model of Table 4):
#   (data.dataset, net, latent size, log-scale, VAE epochs, latent-WGAN epochs, lr halved at epochs,
#    log Z every epochs)
COLOUR = {
    'cifar10': ('cifar10', 'vaepp_cifar', 1024, 'per_pixel', 800.0, 800.0,
                (200, 400, 600, 800, 1000, 1200, 1400, 1600), 100.0),
    'cifar10_sampling': ('cifar10', 'vaepp_sampling', 128, 'scalar', 400.0, 1600.0,
                         (100, 200, 300, 400, 800, 1200, 1600, 2000), 400.0),
    'celeb_a': ('celeb_a', 'vaepp_sampling', 128, 'scalar', 400.0, 1600.0,
                (100, 200, 300, 400, 800, 1200, 1600, 2000), 400.0),
}
COLOUR_WEIGHT, COLOUR_MALA_STEP, COLOUR_MIN_LOG_STD = 1000.0, 5e-5, -3.0
# The colour scripts feed their nets u = (k - 127.5) / 128 and penalise |grad_u D|^6 (weight 2) on
# interpolates; our images are x = k / 255, grad_x D = (255 / 128) grad_u D, so the same penalty is
# |grad_x D|^6 with weight 2 (128 / 255)^6.
COLOUR_DIV_WEIGHT = 2.0 * (128.0 / 255.0) ** 6

# The paper's bits/dim on CIFAR-10 (Table 1 for div1; Table 3 for the other penalties; Table 3 gives
# 3.20 for naive with div1 where Table 1 gives 3.15): {penalty: (naive, vaepp, flow)}.
PAPER_BITS_PER_DIM = {'div1': (3.15, 2.91, 2.84), 'gp': (3.15, 2.95, None),
                      'div2': (4.47, 2.99, None)}

PAPER_NLL = {  # (naive, vaepp, flow)
    'static_mnist': (78.06, 77.73, 77.66),
    'mnist': (76.49, 76.37, 76.23),
    'fashion_mnist': (214.63, 213.24, 213.19),
    'omniglot': (90.72, 89.60, 89.24),
}


def parse(arg: str):
  return config_lib.parse_tokens(arg, {'method': METHODS, 'dataset': tuple(DATASETS) + tuple(COLOUR),
                                       'penalty': tuple(PENALTIES), 'budget': BUDGETS}, 'vaepp')


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  tokens = parse(arg)
  method = tokens.get('method', 'vaepp')
  dataset = tokens.get('dataset', 'static_mnist')
  penalty = tokens.get('penalty', 'div1')
  colour = dataset in COLOUR
  if colour:
    name, net, latent_dim, scale, vae_epochs, gan_epochs, decay, log_z_every = COLOUR[dataset]
    weight, mala_step, min_log_std = COLOUR_WEIGHT, COLOUR_MALA_STEP, COLOUR_MIN_LOG_STD
  else:
    name, latent_dim, weight, mala_step, min_log_std = DATASETS[dataset]
    net, scale, vae_epochs, gan_epochs = 'vaepp', '', 1000.0, 1000.0
    decay = tuple(float(e) for e in range(200, 2001, 200))
    log_z_every = 500.0 if dataset == 'static_mnist' else 1000.0  # the code's test epochs
  config = config_lib.defaults()  # What the paper and the code do not set: vaeprior_jax/config.py.
  config.entry = arg or 'vaepp,static_mnist'
  config.paper_nll = None
  config.paper_bits_per_dim = None
  trained = ('naive', 'vaepp', 'flow')
  if method in trained and penalty == 'div1' and not colour:
    config.paper_nll = PAPER_NLL[dataset][trained.index(method)]
  if method in trained and dataset == 'cifar10':
    config.paper_bits_per_dim = PAPER_BITS_PER_DIM[penalty][trained.index(method)]

  m = config.model
  m.net = net
  m.latent_dim = latent_dim
  m.vaepp_min_log_std = min_log_std
  m.vaepp_mean_activation = 'sigmoid'   # the code's tanh_clip never trains (vaepp_nets)
  m.likelihood = 'discretized_logistic' if colour else 'bernoulli'
  if colour:
    m.logistic_scale = scale            # per_pixel (dmm_cifar10.py) | scalar (its uniform_scale)
    m.logistic_min_log_scale = -20.0    # the code's epsilon
  m.prior = 'standard' if method == 'standard' else 'pullback'
  # flow: the code's 20 planar layers, over the truncated normal (MNIST family) or the plain one
  # (colour); model.posterior=realnvp puts the library's RealNVP there instead.
  # q(z|x): the MNIST-family scripts truncate it at 2 sigma; the colour scripts (dmm_cifar10.py,
  # dmm_for_sampling.py) use the plain normal (the paper's truncated one:
  # --config.model.posterior=truncated_gaussian).
  m.posterior = 'planar' if method == 'flow' else ('gaussian' if colour else 'truncated_gaussian')
  m.posterior_truncation = 2.0
  m.planar_layers = 20
  m.planar_base_truncation = 0.0 if colour else 2.0
  m.pullback_base = 'standard'
  m.pullback_weight = weight
  m.pullback_xi_init = 0.0
  m.discriminator = net
  m.pullback_sample_start = 'gan'
  m.pullback_mala_steps = 2020          # the code: 101 rounds of 20 steps
  m.pullback_mala_step_size = mala_step
  # The latent WGAN: the MNIST scripts' MLPs (eps of the latent size), or the colour scripts' conv
  # nets on z as an 8x8 map (eps of size 128; latent_gan.ConvGenerator / ConvCritic).
  m.latent_gan_net = 'conv' if colour else 'mlp'
  m.latent_gan_noise_dim = 0            # the net's default: the latent size (mlp), 128 (conv)
  m.latent_gan_units = 40
  m.latent_gan_generator_layers = 5
  m.latent_gan_critic_layers = 6

  config.data.dataset = name
  # Static MNIST is binary. The other grey-level datasets as the code trains them: the encoder reads
  # the grey image e and the likelihood scores e itself (data.binarize=False), the test NLL is that
  # of the binarized test images with the proposal q(z|e) (eval.proposal_input=grey); the paper's
  # alternative q(z|x), trained on images binarized anew every step: data.binarize=True,
  # eval.proposal_input=target.
  config.data.binarize = dataset == 'static_mnist'

  t = config.train
  t.method = {'vaepp': 'vaepp', 'flow': 'vaepp', 'naive': 'vaepp_naive', 'standard': 'joint'}[method]
  t.batch_size = 128
  t.learning_rate = 1e-4
  t.lr_decay_factor = 0.5
  t.num_epochs = vae_epochs             # the VAE phase (the code's warm_up_start)
  t.lr_decay_epochs = tuple(float(e) for e in decay)
  t.latent_gan_epochs = gan_epochs      # the code's max_epoch - warm_up_start
  t.latent_gan_critic_steps = 5
  # The latent WGAN's real latents: posterior means, but samples for flows and in dmm_cifar10.py.
  t.latent_gan_real = 'sample' if method == 'flow' or dataset == 'cifar10' else 'mean'
  t.latent_gan_penalty_weight = 0.0     # the kind's (2 for WGAN-div) in every script: latent space
  t.warmup_epochs = 0.0                 # the code trains with warm = 1 from the start
  t.l2_reg = 2e-4
  t.gradient_penalty = PENALTIES[penalty]
  t.gradient_penalty_weight = 0.0       # the kind's: 2 for WGAN-div, 10 for WGAN-GP
  t.gradient_penalty_exponent = 0.0     # the code's: |g|^3 on interpolates, |g|^6 at points
  t.vaepp_penalty_scale = 'weight'      # the paper: 'beta'
  t.vaepp_prior_samples = 128
  t.vaepp_naive_same_batch = True      # naive: a VAE then a critic update per batch (the code)
  t.vaepp_naive_vae_steps = 5           # ... with same_batch=False (the paper's Algorithm 1): n_c
  t.vaepp_naive_critic_l2 = False       # naive: no L2 in D's own step (both _nD scripts)
  t.log_z_every_epochs = log_z_every   # the code's test epochs
  if method == 'naive' and dataset == 'cifar10':
    # dmm_cifar10_nD.py, where it differs from dmm_cifar10.py: the penalty without W, one latent
    # critic step per generator step, posterior means as the latent WGAN's real latents, and a
    # latent critic whose last two blocks keep the 4x4 map.
    t.vaepp_penalty_scale = 'one'
    t.latent_gan_critic_steps = 1
    t.latent_gan_real = 'mean'
    m.latent_gan_net = 'conv_4x4'
  if colour and penalty in ('div1', 'div2'):
    t.gradient_penalty_exponent = 6.0   # the colour scripts: (|g|^2)^3 for both kinds
    t.gradient_penalty_weight = COLOUR_DIV_WEIGHT  # in our coordinates (above)
  t.early_stopping = False
  t.checkpoint_every_steps = 5000
  t.log_every_steps = 500

  e = config.eval
  e.num_samples = 1000
  e.batch_size = 100
  e.chunk_size = 100
  e.log_z_samples = 1000
  e.log_z_max_images = 0
  e.log_z_prior_samples = 100_000       # the check of log Z (docs/vaepp.md, "Checking log Z")
  e.proposal_input = 'target' if dataset == 'static_mnist' or colour else 'grey'
  if colour:                            # dmm_cifar10.py: test_n_qz = 10, for log Z and the NLL
    e.num_samples, e.log_z_samples, e.batch_size, e.chunk_size = 10, 10, 64, 10

  budget = tokens.get('budget')
  if budget == 'quickstart':            # Tens of minutes on a CPU: the shape of the results.
    t.num_epochs, t.latent_gan_epochs, t.lr_decay_epochs = 10.0, 2.0, ()
    t.log_z_every_epochs = 5.0
    t.learning_rate = 1e-3
    t.checkpoint_every_steps, t.log_every_steps = 1000, 100
    m.pullback_mala_steps = 200
    e.log_z_samples, e.log_z_max_images = 100, 2000
  elif budget == 'runlocal':            # Seconds: a smoke test of the whole pipeline.
    t.num_epochs, t.num_steps, t.lr_decay_epochs = -1.0, 20, ()
    t.latent_gan_epochs = 0.05
    t.log_z_every_epochs = 0.0
    t.checkpoint_every_steps, t.log_every_steps = 10, 5
    m.pullback_mala_steps = 5
    config.data.validation_size = 1000
    e.num_samples, e.log_z_samples, e.log_z_max_images = 10, 4, 64
    e.log_z_prior_samples = 1000
  # What the paper's numbers are for: a run whose settings differ (overrides) reports none.
  config.paper_setting = config_lib.paper_setting(config, (
      'train.gradient_penalty', 'train.latent_gan_real'))
  return config
