"""Post-hoc and iterative prior training (Xu et al., Sec. 3, App. B.3, Algorithm B.1): the methods
`post_hoc` and `iterative` (`train.method`; `joint` is
`methods.joint`):
  joint      p_lambda(z), q_phi(z|x) and p_theta(x|z) trained together on the warm-up ELBO (default).
  post_hoc   start from a trained standard VAE, freeze q_phi(z|x) and p_theta(x|z), and fit p_lambda(z)
             for `train.post_hoc_epochs` (paper: 3,200), at `train.prior_learning_rates[0]` (1e-3) for
             the first half and `[1]` (1e-4) for the second.
  iterative  Algorithm B.1 from the same start (Iteration 1a): Iteration 1b fits p_lambda(z) for 2M
             epochs (M at 1e-3, M at 1e-4), then for i = 2..I, M epochs of q_phi(z|x) and p_theta(x|z)
             with p_lambda(z) fixed and M epochs of p_lambda(z) with them fixed, all at
             `train.iterative_learning_rate` (1e-4). M = `train.iterative_epochs`, I =
             `train.iterative_iterations` (paper: M=400, I=4 on StaticMNIST; M=100, I=16 elsewhere).

The trained standard VAE is the workdir `train.init_from` (its best checkpoint if it kept one, else its
latest); with `train.init_from = ''` it is trained first, in `workdir/pretrain`, with this config's
settings and `model.prior = 'standard'` (Iteration 1a). Its parameters become those of q_phi(z|x) and
p_theta(x|z); the prior's are initialised on z ~ q_phi(z|x) of the first batch (ActNorm's data init).

A staged run is a list of `Phase`s over one global step counter: each phase trains one group of
parameters ('vae' = encoder, posterior and decoder; 'prior') with a constant learning rate, its Adam
moments kept per group across phases. The state holds both groups' moments at every step, so a run
resumes inside any phase, and the phase of a step is a function of the step. The loss is the ELBO
(beta = 1) plus L2 on the trained group's non-linear kernels (and Reg[q(z)] when
`train.qz_regularizer` and the group is 'vae').
"""

import os
from typing import Dict, List, Optional, Sequence, Tuple

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec

from vaeprior_jax import config as config_lib
from vaeprior_jax import models
from vaeprior_jax.methods import base
from vaeprior_jax.methods import objectives

# This component's config keys and their defaults (`config.declare`).
config_lib.declare(
    'train.method=post_hoc|iterative',
    resumable=('train.post_hoc_epochs',),
    train=dict(
        init_from='',  # post_hoc / iterative: the trained standard VAE's workdir
        post_hoc_epochs=3200.0,
        prior_learning_rates=(1e-3, 1e-4),
        iterative_iterations=4,  # I
        iterative_epochs=400.0,  # M
        iterative_learning_rate=1e-4,
        qz_regularizer=False,  # Reg[q(z)] of Xu et al., App. B.3
    ),
)


STRATEGIES = ('joint', 'post_hoc', 'iterative')
GROUPS = ('vae', 'prior')
# The model settings a post-hoc or iterative run must share with its pretrained standard VAE.
SHARED_MODEL_KEYS = ('net', 'posterior', 'latent_dim', 'negative_slope')
SHARED_FLOW_KEYS = ('flow_depth', 'flow_hidden_units', 'coupling_scale_bias')
Phase = base.Phase


def strategy(train_config) -> str:
  """The run's method name (one of STRATEGIES for the library's own)."""
  base.method_class(train_config)  # A one-line error for an unknown name.
  return base.method_name(train_config)


def validate(config):
  """Raises ValueError naming a bad setting of a post-hoc or iterative config."""
  name = strategy(config.train)
  if name not in ('post_hoc', 'iterative'):
    return
  if config.model.prior == 'standard':
    raise ValueError(f'train.method={name} trains a learned prior, but model.prior is '
                     "'standard' (nothing to learn); use e.g. model.prior=realnvp.")
  if models.is_hierarchical(config.model):
    raise ValueError(f'train.method={name} is for one-level VAEs; model.net={config.model.net} '
                     'is a two-level model (use train.method=joint).')
  if config.train.normalize_gradients:
    raise ValueError(f'train.method={name} uses plain Adam per parameter group; '
                     'train.normalize_gradients=True works with joint training only.')
  if config.model.prior not in ('realnvp', 'mog'):
    raise ValueError(f'train.method={name} fits a prior with a density of its own (realnvp, '
                     f'mog); model.prior={config.model.prior} is defined through the encoder.')
  tc = config.train
  if name == 'post_hoc':
    if tc.post_hoc_epochs <= 0 or len(tc.prior_learning_rates) != 2:
      raise ValueError(f'post_hoc needs train.post_hoc_epochs > 0 (got {tc.post_hoc_epochs}) and two '
                       f'train.prior_learning_rates (got {tuple(tc.prior_learning_rates)}).')
  if name == 'iterative':
    if not tc.iterative_learning_rate > 0:
      raise ValueError('train.iterative_learning_rate must be > 0, got '
                       f'{tc.iterative_learning_rate!r}.')
    if tc.iterative_iterations < 1 or tc.iterative_epochs <= 0 or len(tc.prior_learning_rates) != 2:
      raise ValueError(
          f'iterative needs train.iterative_iterations >= 1 (got {tc.iterative_iterations}), '
          f'train.iterative_epochs > 0 (got {tc.iterative_epochs}) and two '
          f'train.prior_learning_rates (got {tuple(tc.prior_learning_rates)}).')


def check_pretrained_config(config, pretrained) -> None:
  """The pretrained VAE must be a standard-prior VAE with this config's nets and dataset."""
  if pretrained.model.prior != 'standard':
    raise ValueError(f'train.init_from must be a VAE with the standard prior, but its model.prior is '
                     f'{pretrained.model.prior!r}.')
  keys = SHARED_MODEL_KEYS + (SHARED_FLOW_KEYS if config.model.posterior == 'realnvp' else ())
  for key in keys:
    if pretrained.model.get(key) != config.model.get(key):
      raise ValueError(f'train.init_from has model.{key}={pretrained.model.get(key)!r}, this config '
                       f'{config.model.get(key)!r}: they must match.')
  if pretrained.data.dataset != config.data.dataset:
    raise ValueError(f'train.init_from was trained on {pretrained.data.dataset!r}, this config uses '
                     f'{config.data.dataset!r}.')


def plan(train_config, steps_per_epoch: int) -> List[Phase]:
  """The phases of a post-hoc or iterative run, from step 0 (after the pretraining)."""
  name = strategy(train_config)
  epochs = lambda e: max(1, int(round(e * steps_per_epoch)))
  lr_high, lr_low = (float(v) for v in train_config.prior_learning_rates)
  if name == 'post_hoc':
    first = epochs(train_config.post_hoc_epochs / 2)
    spans = [('prior', 'post_hoc_1', first, lr_high),
             ('prior', 'post_hoc_2', epochs(train_config.post_hoc_epochs) - first, lr_low)]
  elif name == 'iterative':
    m = epochs(train_config.iterative_epochs)
    lr = float(train_config.iterative_learning_rate)
    spans = [('prior', 'iteration_1b_1', m, lr_high), ('prior', 'iteration_1b_2', m, lr_low)]
    for i in range(2, train_config.iterative_iterations + 1):
      spans += [('vae', f'iteration_{i}a', m, lr), ('prior', f'iteration_{i}b', m, lr)]
  else:
    raise ValueError(f'{name} training has no prior-fitting phases.')
  phases, start = [], 0
  for group, phase_name, length, lr in spans:
    phases.append(Phase(phase_name, (group,), start, start + length, lr))
    start += length
  return phases


def split_params(params) -> Tuple[Dict, Dict]:
  """(vae parameters, prior parameters)."""
  vae = {k: v for k, v in params.items() if k != 'prior'}
  return vae, params.get('prior', {})


def merge_params(vae, prior) -> Dict:
  return dict(vae, prior=prior) if prior else dict(vae)


def _group_optimizer(schedule) -> optax.GradientTransformationExtraArgs:
  """Adam's direction, scaled by the phase's learning rate at the global step."""
  return optax.chain(optax.scale_by_adam(), base.scale_by_step_schedule(schedule))


def init_opt_state(params) -> Dict:
  """Both groups' optimizer states (Adam's moments), as a post-hoc or iterative run keeps them."""
  parts = dict(zip(GROUPS, split_params(params)))
  return {g: _group_optimizer(None).init(parts[g]) for g in GROUPS}


class PriorFitting(base.Method):
  """`post_hoc` and `iterative` (see the module docstring); `phases` replaces the config's plan."""

  name = 'prior_fitting'

  def __init__(self, config, steps_per_epoch: int, phases: Optional[Sequence[Phase]] = None):
    super().__init__(config, steps_per_epoch)
    self._phases = list(phases) if phases is not None else plan(config.train, steps_per_epoch)
    ends = jnp.asarray([p.end for p in self._phases], jnp.int32)
    rates = jnp.asarray([p.learning_rate for p in self._phases], jnp.float32)
    last = len(self._phases) - 1
    self._rate = lambda step: rates[jnp.minimum(jnp.searchsorted(ends, step, side='right'), last)]
    self._l2_weight = config.train.l2_reg
    self._qz_reg = bool(config.train.qz_regularizer)
    self._init_from = None

  validate = classmethod(lambda cls, config: validate(config))

  def partition(self, params):
    return dict(zip(GROUPS, split_params(params)))

  def merge(self, groups):
    return merge_params(groups['vae'], groups['prior'])

  def optimizers(self):
    return {g: _group_optimizer(self._rate) for g in GROUPS}

  def phases(self):
    return list(self._phases)

  def loss(self, model, params, model_state, trained, batch, rng, step):
    use_reg = self._qz_reg and 'vae' in trained
    terms, model_state = base.apply_model(model, params, model_state, batch, rng, use_reg, True,
                                          method=model.log_weight_terms)
    loss, metrics = objectives.training_loss(terms, 1.0, objectives.l2_penalty(trained),
                                             self._l2_weight, use_reg)
    metrics.update(beta=jnp.ones((), jnp.float32), learning_rate=self._rate(step))
    return loss, metrics, model_state

  def train_key(self, key):
    return jax.random.fold_in(key, 1)

  def prepare(self, workdir, train_fn):
    """Finds the trained standard VAE: `train.init_from`, or else trains (or resumes, or finds
    trained) one in workdir/pretrain (Iteration 1a)."""
    self._init_from = self.config.train.init_from or _pretrain(self.config, workdir,
                                                                      train_fn)

  def initial_variables(self, model, batch, key, train_images, mesh):
    from vaeprior_jax import checkpoints  # pylint: disable=g-import-not-at-top
    pretrained = checkpoints.load_config(self._init_from)
    check_pretrained_config(self.config, pretrained)
    _, params, step = checkpoints.restore_run(self._init_from, batch.shape[1:], 'auto', pretrained)
    logging.info('Starting %s prior training from the standard VAE of %s at step %d.',
                 base.method_name(self.config.train), self._init_from, step)

    def start(b, k, vae_params):
      return {'params': merge_params(vae_params, init_prior_params(model, vae_params, b, k))}

    return jax.jit(start, out_shardings=NamedSharding(mesh, PartitionSpec()))(batch, key, params)

  def describe(self):
    return describe(self._phases, self.steps_per_epoch)


def _pretrain(config, workdir: str, train_fn) -> str:
  """Iteration 1a: trains (or resumes, or finds trained) the standard VAE in workdir/pretrain."""
  pretrain_config = ml_collections.ConfigDict(config.to_dict())
  pretrain_config.model.prior = 'standard'
  pretrain_config.train.method = 'joint'
  pretrain_config.train.method = ''
  pretrain_dir = os.path.join(workdir, 'pretrain')
  logging.info('Training the standard VAE first (Iteration 1a), in %s.', pretrain_dir)
  train_fn(pretrain_config, pretrain_dir)
  return pretrain_dir


def make_phase_step(model, group: str, phases: List[Phase], train_config):
  """(state, batch, train_key) -> (state, metrics) for the phases that train `group` (the method's
  step, `base.make_step`, for a `config.train` section and explicit phases)."""
  if group not in GROUPS:
    raise ValueError(f'Unknown parameter group {group!r}; allowed: {", ".join(GROUPS)}.')
  method = PriorFitting(config_lib.complete({'train': train_config}), 1, phases)
  return base.make_step(model, method, (group,))


def init_prior_params(model, vae_params, batch: jax.Array, key: jax.Array):
  """Initial prior parameters for a pretrained VAE: ActNorm's data init on z ~ q(z|x) of `batch`."""
  sample_key, init_key = jax.random.split(key)
  z = model.apply({'params': vae_params}, batch, sample_key, method=model.sample_posterior)
  variables = model.prior.init({'params': init_key}, z, method=model.prior.log_prob)
  return variables.get('params', {})


def total_steps(phases: List[Phase]) -> int:
  return base.total_steps(phases)


phase_of = base.phase_of


def describe(phases: List[Phase], steps_per_epoch: int) -> str:
  return ', '.join(f'{p.name} ({p.group}, {np.round((p.end - p.start) / steps_per_epoch, 2)} epochs, '
                   f'lr {p.learning_rate:g})' for p in phases)


base.REGISTRY.register('post_hoc', PriorFitting)
base.REGISTRY.register('iterative', PriorFitting)
