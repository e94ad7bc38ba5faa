r"""Xu et al. (2019), "On the Necessity and Effectiveness of Learning the Prior of VAE".

Default (no argument): Table 1, StaticMNIST, DenseVAE + RealNVP prior (K=20), the paper's full protocol
(2,400 epochs, batch 128, Adam 1e-4 then 1e-5 after epoch 1,600, L2 1e-4, KL warm-up over 100 epochs,
latent size 40, early stopping on the 100-sample validation NLL every 20 epochs). The paper reports a test NLL of 84.87 nats (standard prior: 88.84), 1,000 samples.

  python -m experiments.train --config=experiments/configs/xu2019.py --workdir=/tmp/run \
      --config.data.manual_dir=../shared/data/binarized_mnist
  python -m experiments.evaluate --workdir=/tmp/run --num_samples=1000 --split=test

Arguments (`--config=experiments/configs/xu2019.py:ARG`):
  quickstart  the same model with a CPU budget of a few minutes (5,000 steps = 12.8 epochs,
              learning rate 1e-3, warm-up over 2 epochs); `make demo` runs it.
  runlocal    a tiny model for smoke tests (seconds).
"""

import ml_collections


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0

  config.model = ml_collections.ConfigDict()
  config.model.net = 'dense'              # dense | conv | resnet
  config.model.prior = 'realnvp'          # standard | realnvp
  config.model.posterior = 'gaussian'     # gaussian | realnvp
  config.model.latent_dim = 40            # 40 on (static) MNIST, 64 on FashionMNIST and Omniglot
  config.model.flow_depth = 20            # K, RealNVP blocks
  config.model.flow_hidden_units = 256    # Dense[256] in each coupling layer
  config.model.coupling_scale_bias = 2.0  # scale = sigmoid(s + 2): each coupling starts near identity
  config.model.negative_slope = 0.2       # leaky ReLU, TensorFlow's default

  config.data = ml_collections.ConfigDict()
  # binarized_mnist | mnist | fashion_mnist | omniglot (Burda et al.'s 28x28 chardata.mat, not tfds'
  # 105x105 omniglot) | cifar10 | celeb_a (colour, [0, 1]: for the Gaussian-decoder models to come)
  config.data.dataset = 'binarized_mnist'
  config.data.manual_dir = ''             # folder with the original files (offline preparation)
  config.data.data_dir = ''               # tfds data_dir; '' = tfds' default (~/tensorflow_datasets)
  # mnist / fashion_mnist / omniglot (App. B.1): validation carved from the training images (0 = the
  # dataset's default: 10,000; 4,000 for Omniglot; 5,000 for CIFAR-10), test set binarized 10 times
  # with a fixed seed; ignored by binarized_mnist and celeb_a, which have their own splits.
  config.data.validation_size = 0
  config.data.split_seed = 0
  config.data.test_binarizations = 10
  config.data.test_binarization_seed = 0

  config.train = ml_collections.ConfigDict()
  config.train.num_epochs = 2400.0
  config.train.num_steps = -1             # > 0 overrides num_epochs
  config.train.batch_size = 128
  config.train.learning_rate = 1e-4
  config.train.lr_decay_epochs = (1600,)
  config.train.lr_decay_factor = 0.1
  config.train.warmup_epochs = 100.0      # beta: 0.01 -> 1 linearly
  config.train.beta_start = 0.01
  config.train.l2_reg = 1e-4              # on kernels of non-linear layers
  config.train.checkpoint_every_steps = 5000
  config.train.max_checkpoints_to_keep = 3
  config.train.log_every_steps = 500
  # Early stopping on validation NLL (App. B.3: StaticMNIST and PixelVAE): every eval_every_epochs,
  # the state with the best validation NLL is kept in workdir/best; `evaluate` uses it.
  config.train.early_stopping = True
  config.train.eval_every_epochs = 20.0
  config.train.early_stopping_num_samples = 100
  config.train.early_stopping_patience_epochs = 0.0  # > 0: stop after this many epochs without a best
  # How the prior is trained (Sec. 3, App. B.3; see vaeprior_jax/prior_training.py): joint | post_hoc |
  # iterative. post_hoc and iterative start from the standard VAE trained in init_from ('' = train it
  # first in workdir/pretrain, with the settings above).
  config.train.prior_training = 'joint'
  config.train.init_from = ''
  config.train.post_hoc_epochs = 3200.0
  config.train.prior_learning_rates = (1e-3, 1e-4)  # post-hoc halves; iterative 1b's two M-epoch parts
  config.train.iterative_iterations = 4   # I (4 on StaticMNIST, 16 elsewhere)
  config.train.iterative_epochs = 400.0   # M (400 on StaticMNIST, 100 elsewhere)
  config.train.iterative_learning_rate = 1e-4
  config.train.qz_regularizer = False     # Reg[q(z)] of App. B.3

  config.eval = ml_collections.ConfigDict()
  config.eval.num_samples = 1000
  config.eval.chunk_size = 100            # samples per vmapped chunk; memory ~ chunk x batch
  config.eval.batch_size = 128            # test examples per compiled call
  config.eval.active_units_samples = 1000

  if arg == 'quickstart':
    config.train.num_epochs = -1.0
    config.train.num_steps = 5000
    config.train.learning_rate = 1e-3
    config.train.lr_decay_epochs = ()
    config.train.warmup_epochs = 2.0
    config.train.checkpoint_every_steps = 1000
    config.train.log_every_steps = 250
    config.train.early_stopping = False
  elif arg == 'runlocal':
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
  elif arg:
    raise ValueError(f'Unknown xu2019 config argument {arg!r}; allowed: quickstart, runlocal.')
  return config
