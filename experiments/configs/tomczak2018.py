r"""Tomczak & Welling (2018), "VAE with a VampPrior": one config per entry of Tables 1-4 on the datasets
this library reads (static and dynamic MNIST, Omniglot), selected by argument.

  python -m experiments.train --workdir=runs/hvae_vamp_static \
      --config=experiments/configs/tomczak2018.py:table1,hvae,vampprior,binarized_mnist \
      --config.data.manual_dir=../shared/data/binarized_mnist
  python -m experiments.evaluate --workdir=runs/hvae_vamp_static --num_samples=5000 --split=test

The argument is a comma-separated list of tokens, in any order:
  table      table1 (standard vs. VampPrior) | table2 (static MNIST) | table3 (dynamic MNIST) |
             table4 (Omniglot)
  net        vae (L = 1, gated MLP) | hvae (L = 2, gated MLPs) | convhvae | pixelhvae
  prior      standard | vampprior | vampprior_data | mog
  dataset    binarized_mnist (static MNIST) | mnist (dynamic MNIST) | omniglot
  lr         lr5e-4 (the default) | lr1e-4 (the paper's other learning rate)
  budget     quickstart (a few CPU minutes) | runlocal (tiny)
No argument: table1,hvae,vampprior,binarized_mnist. `config.paper_nll` holds the paper's test NLL of the
entry (nats; the paper reports log-likelihoods, i.e. minus these), logged by train and written by
evaluate when no override changed the entry's model or dataset. The paper estimates it with 5,000
importance samples; `eval.num_samples` is 1,000 here (the estimate grows with the number of samples,
so pass --num_samples=5000 to evaluate for the paper's protocol).

The paper's protocol (Sec. 5.1 and its code), applied to every entry: Adam with normalized gradients
(each gradient tensor divided by its norm), learning rate 5e-4, batch 100, KL warm-up over 100 epochs,
at most 2,000 epochs, early stopping when the validation ELBO (one sample, every epoch) has not
improved for 50 epochs after the warm-up; no weight decay; 40 latents in z (L = 1) or in each of z1
and z2; K = 500 pseudo-inputs or mixture components (1,000 for Omniglot); pseudo-inputs clipped to
[0, 1]; log-variances hard-tanh'ed to [-6, 2]. Static MNIST: the Larochelle & Murray splits.
Dynamic MNIST: 10,000 training images held out for validation, training batches binarized anew, the
test images binarized once with a fixed seed (the validation images are binarized anew at each
validation here; the paper's code binarizes them once). Omniglot (Burda et al.'s 28x28): 1,345 held
out for validation, binarized likewise.

What differs from the paper's code: decoders output logits (no clamping of probabilities to
[1e-5, 1 - 1e-5]); the warm-up factor rises per step rather than per epoch; PixelHVAE's PixelCNN is the
gated-resnet PixelCNN that PixelVAE uses (3 layers of C + 32 channels by default,
`model.pixelcnn_layers` / `model.pixelcnn_features`), not 8 masked convolutions of 64 channels with
batch norm.

The paper's test NLLs (static MNIST, dynamic MNIST, Omniglot):
  Table 1            standard                  VampPrior
    VAE (L = 1)      88.56  84.50 108.50       85.57  82.38 104.75
    HVAE (L = 2)     86.05  82.42 103.52       83.19  81.24 101.18
    ConvHVAE         82.41  80.40  97.65       81.09  79.75  97.56
    PixelHVAE        80.58  79.70  90.11       79.78  78.45  89.76
  Table 2 (static MNIST)   HVAE + SG 85.89 | + MoG 85.07 | + VampPrior data 85.71 | + VampPrior 83.19 |
                           ConvHVAE + VampPrior 81.09 | PixelHVAE + VampPrior 79.78
  Table 3 (dynamic MNIST)  HVAE + VampPrior data 81.71 | HVAE + VampPrior 81.24 |
                           ConvHVAE + VampPrior 79.78 | PixelHVAE + VampPrior 78.45
  Table 4 (Omniglot)       HVAE + VampPrior 101.18 | ConvHVAE + VampPrior 97.56 |
                           PixelHVAE + VampPrior 89.76
(Caltech 101 Silhouettes, Frey Faces and Histopathology, in Tables 1 and 5, have no reader here.)
"""

import ml_collections

from vaeprior_jax import config as config_lib


DATASETS = ('binarized_mnist', 'mnist', 'omniglot')
_N = lambda *v: dict(zip(DATASETS, v))
NET_TOKENS = {'vae': 'gated_mlp', 'hvae': 'hvae', 'convhvae': 'convhvae', 'pixelhvae': 'pixelhvae'}
PRIORS = ('standard', 'vampprior', 'vampprior_data', 'mog')
TABLE1 = {
    ('vae', 'standard'): _N(88.56, 84.50, 108.50), ('vae', 'vampprior'): _N(85.57, 82.38, 104.75),
    ('hvae', 'standard'): _N(86.05, 82.42, 103.52), ('hvae', 'vampprior'): _N(83.19, 81.24, 101.18),
    ('convhvae', 'standard'): _N(82.41, 80.40, 97.65),
    ('convhvae', 'vampprior'): _N(81.09, 79.75, 97.56),
    ('pixelhvae', 'standard'): _N(80.58, 79.70, 90.11),
    ('pixelhvae', 'vampprior'): _N(79.78, 78.45, 89.76),
}
# Tables 2-4: one dataset each; {(net, prior): NLL}.
TABLE_DATASET = {'table2': 'binarized_mnist', 'table3': 'mnist', 'table4': 'omniglot'}
TABLES_2_TO_4 = {
    'table2': {('hvae', 'standard'): 85.89, ('hvae', 'mog'): 85.07,
               ('hvae', 'vampprior_data'): 85.71, ('hvae', 'vampprior'): 83.19,
               ('convhvae', 'vampprior'): 81.09, ('pixelhvae', 'vampprior'): 79.78},
    'table3': {('hvae', 'vampprior_data'): 81.71, ('hvae', 'vampprior'): 81.24,
               ('convhvae', 'vampprior'): 79.78, ('pixelhvae', 'vampprior'): 78.45},
    'table4': {('hvae', 'vampprior'): 101.18, ('convhvae', 'vampprior'): 97.56,
               ('pixelhvae', 'vampprior'): 89.76},
}
TABLES = ('table1',) + tuple(TABLES_2_TO_4)
# Importance samples per vmapped chunk, per net, keeping the estimator's XLA buffers for a batch of 100
# under 2 GiB (chunk 100 takes 0.13 GiB for HVAE, 5.6 GiB for ConvHVAE, 18.5 GiB for PixelHVAE;
# benchmarks/LOG.md). Raise eval.chunk_size on a large accelerator for speed.
EVAL_CHUNK_SIZES = {'gated_mlp': 100, 'hvae': 100, 'convhvae': 25, 'pixelhvae': 5}
LEARNING_RATES = {'lr5e-4': 5e-4, 'lr1e-4': 1e-4}
BUDGETS = ('quickstart', 'runlocal')


def parse(arg: str):
  """Splits the config argument into {'table', 'net', 'prior', 'dataset', 'lr', 'budget'}; raises
  ValueError naming a bad or repeated token and what is allowed."""
  choices = {'table': TABLES, 'net': tuple(NET_TOKENS), 'prior': PRIORS, 'dataset': DATASETS,
             'lr': tuple(LEARNING_RATES), 'budget': BUDGETS}
  return config_lib.parse_tokens(arg, choices, 'tomczak2018')


def _entry(tokens):
  """(net token, prior, dataset, paper NLL) of the selected table entry."""
  table = tokens.get('table', 'table1')
  net = tokens.get('net', 'hvae')
  prior = tokens.get('prior', 'vampprior')
  if table == 'table1':
    dataset = tokens.get('dataset', 'binarized_mnist')
    if (net, prior) not in TABLE1:
      raise ValueError(f'table1 has no entry {net},{prior}; its priors are standard and vampprior '
                       '(tables 2-4 have the others).')
    return net, prior, dataset, TABLE1[(net, prior)][dataset]
  dataset = TABLE_DATASET[table]
  if tokens.get('dataset', dataset) != dataset:
    raise ValueError(f'{table} is about {dataset}; got dataset {tokens["dataset"]!r}.')
  entries = TABLES_2_TO_4[table]
  if (net, prior) not in entries:
    allowed = ', '.join(f'{n},{p}' for n, p in entries)
    raise ValueError(f'{table} has no entry {net},{prior}; its entries: {allowed}.')
  return net, prior, dataset, entries[(net, prior)]


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  tokens = parse(arg)
  net_token, prior, dataset, paper_nll = _entry(tokens)
  net = NET_TOKENS[net_token]
  config = config_lib.defaults()  # What the paper does not set: vaeprior_jax/config.py.
  config.entry = arg or 'table1,hvae,vampprior,binarized_mnist'
  config.paper_nll = paper_nll

  config.model.net = net                  # gated_mlp (VAE, L = 1) | hvae | convhvae | pixelhvae
  config.model.prior = prior              # of z (L = 1) or z2: standard | vampprior | vampprior_data | mog
  config.model.num_components = 1000 if dataset == 'omniglot' else 500  # K
  config.model.pseudo_inputs_from_data = False  # vampprior: start the pseudo-inputs at training images
  config.model.posterior = 'gaussian'
  config.model.latent_dim = 40            # M (L = 1) or M2, the size of z2
  config.model.z1_dim = 40                # M1 (0: latent_dim)
  config.model.pixelcnn_layers = 3        # PixelHVAE's PixelCNN (shared with PixelVAE)
  config.model.pixelcnn_features = 0      # 0: C + 32 channels

  config.data.dataset = dataset
  config.data.validation_size = 1345 if dataset == 'omniglot' else 0  # 0: 10,000 for MNIST
  config.data.split_seed = 0
  config.data.test_binarizations = 1      # the paper binarizes the test images once
  config.data.test_binarization_seed = 0

  config.train.num_epochs = 2000.0
  config.train.num_steps = -1             # > 0 overrides num_epochs
  config.train.batch_size = 100
  config.train.learning_rate = LEARNING_RATES[tokens.get('lr', 'lr5e-4')]
  config.train.lr_decay_epochs = ()
  config.train.lr_decay_factor = 1.0
  config.train.normalize_gradients = True  # AdamNormGrad of the paper's code
  config.train.warmup_epochs = 100.0      # beta: 0.01 -> 1 linearly
  config.train.beta_start = 0.01
  config.train.l2_reg = 0.0
  config.train.checkpoint_every_steps = 5000
  config.train.max_checkpoints_to_keep = 3
  config.train.log_every_steps = 500
  config.train.early_stopping = True
  config.train.early_stopping_metric = 'elbo'
  config.train.eval_every_epochs = 1.0
  config.train.early_stopping_num_samples = 1
  config.train.early_stopping_patience_epochs = 50.0  # the look-ahead, counted after the warm-up
  config.train.method = 'joint'
  config.train.qz_regularizer = False

  config.eval.num_samples = 1000          # the paper: 5,000
  config.eval.chunk_size = EVAL_CHUNK_SIZES[net]  # memory ~ chunk x batch
  config.eval.batch_size = 100
  config.eval.active_units_samples = 1000

  budget = tokens.get('budget')
  if budget == 'quickstart':
    config.train.num_epochs = -1.0
    config.train.num_steps = 5000
    config.train.warmup_epochs = 2.0
    config.train.checkpoint_every_steps = 1000
    config.train.log_every_steps = 250
    config.train.early_stopping = False
  elif budget == 'runlocal':
    config.model.latent_dim = 4
    config.model.z1_dim = 3
    config.model.num_components = 5
    config.model.pixelcnn_layers = 1
    config.data.validation_size = 16 if dataset != 'binarized_mnist' else 0
    config.train.num_steps = 20
    config.train.batch_size = 8
    config.train.learning_rate = 1e-3
    config.train.warmup_epochs = 1.0
    config.train.checkpoint_every_steps = 10
    config.train.log_every_steps = 5
    config.train.early_stopping = False
    config.train.eval_every_epochs = 1.0
    config.eval.num_samples = 10
    config.eval.chunk_size = 4
    config.eval.batch_size = 8
    config.eval.active_units_samples = 10
    config.eval.active_units_batch_size = 1000  # the 50,000 training images in 50 calls
  # What the paper's number is for: a run whose settings differ (overrides) reports no paper number.
  config.paper_setting = config_lib.paper_setting(config)
  return config
