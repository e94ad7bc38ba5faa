"""The three ways to train a learned prior (Xu et al., Sec. 3, App. B.3, Algorithm B.1).

`train.prior_training`:
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
resumes inside any phase, and the phase of a step is a function of the step.
"""

import dataclasses
from typing import Dict, List, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from vaeprior_jax import hvae_nets
from vaeprior_jax import objectives

STRATEGIES = ('joint', 'post_hoc', 'iterative')
HIERARCHICAL_NETS = hvae_nets.NETS
GROUPS = ('vae', 'prior')
# The model settings a post-hoc or iterative run must share with its pretrained standard VAE.
SHARED_MODEL_KEYS = ('net', 'posterior', 'latent_dim', 'negative_slope')
SHARED_FLOW_KEYS = ('flow_depth', 'flow_hidden_units', 'coupling_scale_bias')


@dataclasses.dataclass(frozen=True)
class Phase:
  name: str
  group: str          # 'vae' or 'prior': the parameters this phase trains.
  start: int          # global steps [start, end)
  end: int
  learning_rate: float


def strategy(train_config) -> str:
  name = train_config.get('prior_training', 'joint')
  if name not in STRATEGIES:
    raise ValueError(f'Unknown train.prior_training {name!r}; allowed: {", ".join(STRATEGIES)}.')
  return name


def validate(config):
  """Raises ValueError naming a bad setting of a post-hoc or iterative config."""
  name = strategy(config.train)
  if name == 'joint':
    return
  if config.model.prior == 'standard':
    raise ValueError(f'train.prior_training={name} trains a learned prior, but model.prior is '
                     "'standard' (nothing to learn); use e.g. model.prior=realnvp.")
  if config.model.net in HIERARCHICAL_NETS:
    raise ValueError(f'train.prior_training={name} is for one-level VAEs; model.net={config.model.net} '
                     'is a two-level model (use train.prior_training=joint).')
  if config.train.get('normalize_gradients', False):
    raise ValueError(f'train.prior_training={name} uses plain Adam per parameter group; '
                     'train.normalize_gradients=True works with joint training only.')
  if config.model.prior not in ('realnvp', 'mog'):
    raise ValueError(f'train.prior_training={name} fits a prior with a density of its own (realnvp, '
                     f'mog); model.prior={config.model.prior} is defined through the encoder.')
  tc = config.train
  if name == 'post_hoc':
    if tc.post_hoc_epochs <= 0 or len(tc.prior_learning_rates) != 2:
      raise ValueError(f'post_hoc needs train.post_hoc_epochs > 0 (got {tc.post_hoc_epochs}) and two '
                       f'train.prior_learning_rates (got {tuple(tc.prior_learning_rates)}).')
  if name == 'iterative':
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
    raise ValueError('Joint training has no phases.')
  phases, start = [], 0
  for group, phase_name, length, lr in spans:
    phases.append(Phase(phase_name, group, start, start + length, lr))
    start += length
  return phases


def phase_of(phases: List[Phase], step: int) -> Phase:
  for phase in phases:
    if phase.start <= step < phase.end:
      return phase
  raise ValueError(f'Step {step} is past the last phase (which ends at step {phases[-1].end}).')


def split_params(params) -> Tuple[Dict, Dict]:
  """(vae parameters, prior parameters)."""
  vae = {k: v for k, v in params.items() if k != 'prior'}
  return vae, params.get('prior', {})


def merge_params(vae, prior) -> Dict:
  return dict(vae, prior=prior) if prior else dict(vae)


def _adam() -> optax.GradientTransformation:
  return optax.scale_by_adam()


def init_opt_state(params) -> Dict:
  vae, prior = split_params(params)
  return {'vae': _adam().init(vae), 'prior': _adam().init(prior)}


def make_phase_step(model, group: str, phases: List[Phase], train_config):
  """(state, batch, train_key) -> (state, metrics) for the phases that train `group`.

  The loss is the ELBO (beta = 1) plus L2 on the trained group's non-linear kernels (and Reg[q(z)]
  when `train.qz_regularizer` and the group is 'vae'); its gradient reaches only `group`.
  """
  if group not in GROUPS:
    raise ValueError(f'Unknown parameter group {group!r}; allowed: {", ".join(GROUPS)}.')
  ends = jnp.asarray([p.end for p in phases], jnp.int32)
  rates = jnp.asarray([p.learning_rate for p in phases], jnp.float32)
  l2_weight = train_config.l2_reg
  use_reg = bool(train_config.get('qz_regularizer', False)) and group == 'vae'
  adam = _adam()

  def step_fn(state, batch, train_key):
    step = state['step']
    rng = jax.random.fold_in(train_key, step)
    lr = rates[jnp.minimum(jnp.searchsorted(ends, step, side='right'), len(phases) - 1)]
    vae, prior = split_params(state['params'])
    trained, frozen = (vae, prior) if group == 'vae' else (prior, vae)

    combine = lambda t: merge_params(t, frozen) if group == 'vae' else merge_params(frozen, t)

    def loss_fn(trained):
      t = model.apply({'params': combine(trained)}, batch, rng, use_reg, True,
                      method=model.log_weight_terms)
      return objectives.training_loss(t, 1.0, objectives.l2_penalty(trained), l2_weight, use_reg)

    grads, metrics = jax.grad(loss_fn, has_aux=True)(trained)
    updates, group_state = adam.update(grads, state['opt_state'][group], trained)
    params = combine(jax.tree.map(lambda p, u: p - lr * u, trained, updates))
    opt_state = dict(state['opt_state'], **{group: group_state})
    metrics.update(beta=jnp.ones((), jnp.float32), learning_rate=lr)
    return {'params': params, 'opt_state': opt_state, 'step': step + 1}, metrics

  return step_fn


def init_prior_params(model, vae_params, batch: jax.Array, key: jax.Array):
  """Initial prior parameters for a pretrained VAE: ActNorm's data init on z ~ q(z|x) of `batch`."""
  sample_key, init_key = jax.random.split(key)
  z = model.apply({'params': vae_params}, batch, sample_key, method=model.sample_posterior)
  variables = model.prior.init({'params': init_key}, z, method=model.prior.log_prob)
  return variables.get('params', {})


def total_steps(phases: List[Phase]) -> int:
  return phases[-1].end if phases else 0


def describe(phases: List[Phase], steps_per_epoch: int) -> str:
  return ', '.join(f'{p.name} ({p.group}, {np.round((p.end - p.start) / steps_per_epoch, 2)} epochs, '
                   f'lr {p.learning_rate:g})' for p in phases)
