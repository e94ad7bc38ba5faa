"""The library's config defaults, in one place, and the token parser the paper configs share.

A run's config has four sections the library reads: `model`, `data`, `train` and `eval` (and
`seed`). `defaults()` holds every key with its default; the paper configs
(`experiments/configs/*.py`) start from it and set what their paper says. `complete(config)` fills
what a config leaves out from these defaults, so a config written by hand, or the `config.json` of a
run from before a key existed, reads the same as a full one; the library then reads each key
directly, never with a default of its own.
"""

from typing import Dict, Sequence

import ml_collections


def defaults() -> ml_collections.ConfigDict:
  """Every key the library reads, with its default."""
  config = ml_collections.ConfigDict()
  config.seed = 0

  model = config.model = ml_collections.ConfigDict()
  model.net = 'dense'                 # nets.REGISTRY (one-level and two-level nets)
  model.prior = 'standard'            # priors.REGISTRY
  model.posterior = 'gaussian'        # posteriors.REGISTRY
  model.likelihood = 'bernoulli'      # likelihoods.REGISTRY (bernoulli, gaussian, discretized_logistic)
  model.posterior_truncation = 2.0    # posterior=truncated_gaussian: |z - mu| <= this many sigma
  model.planar_layers = 20            # posterior=planar: planar layers (VAEPP's code: 20) over ...
  model.planar_base_truncation = 0.0  # ... N(mu, sigma^2), truncated at this many sigma if > 0
  model.latent_dim = 40               # z (of z2 in the two-level models)
  model.z1_dim = 0                    # the two-level models' z1 (0: latent_dim)
  model.flow_depth = 20               # K, RealNVP blocks (prior or posterior)
  model.flow_hidden_units = 256       # Dense[256] in each coupling layer
  model.flow_unroll = 1               # RealNVP blocks per loop iteration (flow_depth: no loop)
  model.coupling_scale_bias = 2.0     # scale = sigmoid(s + 2): each coupling starts near identity
  model.negative_slope = 0.2          # leaky ReLU, TensorFlow's default
  model.num_components = 500          # MoG components / VampPrior pseudo-inputs
  model.pseudo_inputs_from_data = False  # vampprior: start the pseudo-inputs at training images
  model.pixelcnn_layers = 3           # PixelVAE / PixelHVAE's gated layers per stream
  model.pixelcnn_features = 0         # 0: C + 32 channels
  model.two_stage = False             # Dai & Wipf: a second VAE on the first stage's latents
  model.second_stage_latent_dim = 0   # ... its latent size (0: latent_dim)
  model.second_stage_units = 1024     # ... (and net=second_stage): Dense width, 2048 for ResNets
  model.second_stage_layers = 3
  model.dai_resnet_base_dim = 16     # net=dai_resnet (Dai & Wipf's Fig. 11): channels at full size,
  model.dai_resnet_num_scales = 4     # ... encoder scale blocks (paper: 3, CelebA 4),
  model.dai_resnet_blocks_per_scale = 1  # ... residual blocks per scale block (paper: 2),
  model.dai_resnet_fc_dim = 512       # ... the encoder's dense residual block,
  model.dai_resnet_pooling = 'mean'   # ... before it: mean over H, W (code) | flatten (paper)
  model.learn_gamma = True            # gaussian likelihood: learn the scalar standard deviation
  model.log_gamma = 0.0               # ... its initial (or fixed) log
  model.mean_activation = 'identity'  # ... the decoder output -> mean: identity | sigmoid
  model.logistic_scale = 'per_pixel'  # discretized_logistic: per_pixel (2C decoder channels) | scalar
  model.logistic_min_log_scale = -20.0  # ... log-scales clipped below here (VAEPP's code)
  model.pullback_base = 'standard'    # prior=pullback (VAEPP): p_base(z) exp(-beta D(G(z))) / Z,
  model.pullback_weight = 10.0        # ... beta = W sigmoid(xi): W (code: 10 MNIST, 20 Fashion, 1000 colour)
  model.pullback_xi_init = 0.0        # ... xi's initial value
  model.discriminator = 'vaepp'       # ... D: nets.DISCRIMINATORS
  model.pullback_sample_start = 'base'  # ... prior samples: MALA from base draws | the latent WGAN's,
  model.pullback_mala_steps = 0       # ... MALA steps (0: none),
  model.pullback_mala_step_size = 1e-5  # ... and their size (code: 5e-5 static MNIST, 1e-5 MNIST)
  model.pullback_mala_adapt_steps = 0  # ... after this many tuning it (dual averaging; 0: fixed: the code)
  model.latent_gan_net = 'mlp'        # ... the latent WGAN (VAEPP's sampling): mlp | conv (the
                                      #     code's for colour images: z as an 8x8 map),
  model.latent_gan_noise_dim = 0      # ... its eps size (0: the latent size for mlp, 128 for conv),
  model.latent_gan_units = 40         # ... mlp: Dense width,
  model.latent_gan_generator_layers = 5  # ... hidden layers of the generator
  model.latent_gan_critic_layers = 6  # ... and of the critic
  model.vaepp_min_log_std = -5.0      # net=vaepp: log_std clipped below (code: -3 static MNIST)
  model.vaepp_mean_activation = 'sigmoid'  # ... Bernoulli mean: sigmoid | tanh_clip (code; cannot
                                          # train from its zero init: vaepp_nets)
  model.conv_backend = 'xla'          # nets.CONV_BACKENDS: xla | onednn (CPU, opt-in: docs/cpu_performance.md)

  data = config.data = ml_collections.ConfigDict()
  data.dataset = 'binarized_mnist'
  data.manual_dir = ''                # folder with the original files (offline preparation)
  data.data_dir = ''                  # tfds data_dir; '' = tfds' default (~/tensorflow_datasets)
  data.cache_dir = ''                 # keep the prepared splits here as .npz (no TF to reload)
  data.validation_size = 0            # 0: the dataset's default
  data.split_seed = 0
  data.binarize = True                # mnist / fashion_mnist / omniglot: binarize the grey levels
                                      # (anew every step; the test set 10 times); False: grey levels
                                      # in [0, 1] as they are (Dai & Wipf's continuous data)
  data.celeb_a_crop = 140             # celeb_a: centre crop before 64x64: 140 (WAE's) | 128 (Dai &
                                      # Wipf's code, its [45:173, 25:153])
  data.test_binarizations = 10
  data.test_binarization_seed = 0

  train = config.train = ml_collections.ConfigDict()
  train.method = ''                   # methods.REGISTRY; '' = prior_training below
  train.prior_training = 'joint'      # joint | post_hoc | iterative (the older name of method)
  train.num_epochs = 2400.0
  train.num_steps = -1                # > 0 overrides num_epochs
  train.on_device = False             # True: data on the devices, steps in compiled loops
  train.batch_size = 128
  train.learning_rate = 1e-4
  train.lr_decay_epochs = ()
  train.lr_decay_factor = 0.1
  train.normalize_gradients = False   # Adam on per-tensor unit-norm gradients (Tomczak & Welling)
  train.warmup_epochs = 100.0         # beta: beta_start -> 1 linearly
  train.beta_start = 0.01
  train.l2_reg = 1e-4                 # on kernels of non-linear layers
  train.checkpoint_every_steps = 5000
  train.max_checkpoints_to_keep = 3
  train.log_every_steps = 500
  train.early_stopping = False        # validate every eval_every_epochs, keep the best in best/
  train.early_stopping_metric = 'nll'  # nll | elbo
  train.eval_every_epochs = 20.0
  train.early_stopping_num_samples = 100
  train.early_stopping_patience_epochs = 0.0  # > 0: stop after this many epochs without a best
  train.init_from = ''                # post_hoc / iterative: the trained standard VAE's workdir
  train.post_hoc_epochs = 3200.0
  train.prior_learning_rates = (1e-3, 1e-4)
  train.iterative_iterations = 4      # I
  train.iterative_epochs = 400.0      # M
  train.iterative_learning_rate = 1e-4
  train.qz_regularizer = False        # Reg[q(z)] of Xu et al., App. B.3
  train.second_stage_epochs = 400.0   # method=two_stage: the second stage's budget,
  train.second_stage_learning_rate = 1e-4  # ... its Adam,
  train.second_stage_lr_decay_epochs = ()  # ... times lr_decay_factor at these (from its start)
  train.gradient_penalty = 'wgan_div_1'  # method=vaepp|vaepp_naive: penalties.KINDS,
  train.gradient_penalty_weight = 0.0  # ... its weight (0: the kind's, 10 GP / 2 div),
  train.gradient_penalty_exponent = 0.0  # ... on the gradient norm (0: the code's, 2 / 3 / 6)
  train.vaepp_penalty_scale = 'weight'  # ... R scaled by W (code) | beta (paper)
  train.vaepp_prior_samples = 128     # ... eps ~ p_base per step (log Z_batch, the penalty's fakes)
  train.vaepp_naive_vae_steps = 5     # ... vaepp_naive: VAE steps per critic step
  train.latent_gan_epochs = 0.0       # ... the latent WGAN after the VAE (0: none),
  train.latent_gan_critic_steps = 5   # ... critic steps per generator step,
  train.latent_gan_real = 'mean'      # ... its real latents: posterior means | samples (flows)
  train.log_z_every_epochs = 0.0      # ... log Z over the training split every this many epochs

  ev = config.eval = ml_collections.ConfigDict()
  ev.num_samples = 1000
  ev.chunk_size = 100                 # samples per vmapped chunk; memory ~ chunk x batch
  ev.batch_size = 128                 # test examples per compiled call
  ev.memory_budget_gb = 0.0           # per device, for the estimator (0: half a device's memory):
                                      # a chunk that needs more is made smaller
  ev.active_units_samples = 1000
  ev.active_units_batch_size = 0      # training images per call of the active-units pass (0: batch_size)
  ev.proposal_input = 'target'        # what q(z|.) reads: target | grey (VAEPP's code: the grey image
                                      # e of a binarized test image, for runs trained on grey levels)
  ev.log_z_samples = 1000             # prior=pullback: log Z from this many z ~ q(z|x) per image,
  ev.log_z_max_images = 0             # ... over this many training images (0: all; seeded subset)
  ev.log_z_chunk_size = 100
  ev.log_z_prior_samples = 100_000    # ... and the prior-based check of it from this many eps ~ p_base
  return config


def _fill(target: ml_collections.ConfigDict, source) -> None:
  for key, value in source.items():
    if isinstance(value, (ml_collections.ConfigDict, dict)) and isinstance(
        target.get(key), ml_collections.ConfigDict):
      _fill(target[key], value)
    else:  # As given, whatever the default's type (JSON gives lists for tuples).
      with target.ignore_type():
        target[key] = value


def complete(config) -> ml_collections.ConfigDict:
  """A copy of `config` (a ConfigDict or a nested dict) with what it leaves out taken from
  `defaults()`. Keys the defaults lack (a paper's `entry`, `paper_nll`, your own) are kept."""
  out = defaults()
  source = config.to_dict() if isinstance(config, ml_collections.ConfigDict) else dict(config)
  _fill(out, source)
  return out


def complete_section(section, name: str) -> ml_collections.ConfigDict:
  """One section (e.g. `config.model`) completed from the defaults of section `name`."""
  return complete({name: section})[name]


def parse_tokens(arg: str, choices: Dict[str, Sequence[str]], paper: str) -> Dict[str, str]:
  """Splits a config argument 'a,b,c' into {kind: token}, each token found in one of `choices`
  ({kind: allowed tokens}); raises ValueError naming a bad or repeated token and what is allowed."""
  out = {}
  for token in (t.strip() for t in arg.split(',')):
    if not token:
      continue
    kinds = [k for k, allowed in choices.items() if token in allowed]
    if not kinds:
      allowed = '; '.join(f'{k}: {", ".join(v)}' for k, v in choices.items())
      raise ValueError(f'Unknown {paper} config token {token!r}; allowed: {allowed}.')
    if kinds[0] in out:
      raise ValueError(f'Two {kinds[0]} tokens in the {paper} config argument: '
                       f'{out[kinds[0]]!r} and {token!r}.')
    out[kinds[0]] = token
  return out


def paper_setting(config, keys: Sequence[str]) -> ml_collections.ConfigDict:
  """The values of `config` at the dotted `keys` (e.g. 'model.net'), as nested sections: a paper
  config's `paper_setting`, what its `paper_*` numbers are for (`evaluation.report.paper_metrics`
  reports them only for a run whose values at these keys are the same)."""
  out = {}
  for key in keys:
    *sections, name = key.split('.')
    value, node = config, out
    for part in key.split('.'):
      value = value[part]
    for part in sections:
      node = node.setdefault(part, {})
    node[name] = value
  return ml_collections.ConfigDict(out)
