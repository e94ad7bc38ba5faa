"""Dai & Wipf's two-stage training (`train.method=two_stage`, with `model.two_stage=True`): one run,
one workdir, two phases over one global step.

  stage_1  the first-stage VAE (parameter group 'first') on the data: the ELBO with the standard
           prior (KL warm-up if `train.warmup_epochs` > 0; the papers' configs use none), Adam at
           `train.learning_rate`, times `train.lr_decay_factor` at each of `train.lr_decay_epochs`,
           for `train.num_epochs` (or `train.num_steps`).
  stage_2  the second-stage VAE (group 'second') on z = mu(x) + sigma(x) eps: (mu, sigma) from the
           trained, frozen first-stage encoder in inference mode, eps drawn anew for every batch (the
           code extracts (mu, sigma) once and samples eps per batch: the same values, since the
           frozen encoder is deterministic). Adam at `train.second_stage_learning_rate`, times
           `train.lr_decay_factor` at each of `train.second_stage_lr_decay_epochs` (counted from the
           start of stage 2), for `train.second_stage_epochs`.

Each stage has its own Adam (its count starts with the stage), so a run resumes exactly inside
either stage. The first stage's gamma (and the second's gamma_z) are logged as `gamma` and
`gamma_z` where the likelihood learns them, and beside the stage being trained its optimum with the
decoder fixed, `sqrt_mse` (or `sqrt_mse_z`): gamma has converged where the two meet. The KL term is
the one-sample estimate or, with `train.kl_estimate=closed_form`, the closed form (the code's).
`train.init_from` may name the workdir of a first stage trained elsewhere (a `two_stage` run, or a
one-level VAE with the same model settings): its first-stage parameters are the start, and stage 1
is skipped.
"""

import math

import jax
import jax.numpy as jnp
import optax
from absl import logging
from jax.sharding import NamedSharding, PartitionSpec

from vaeprior_jax import config as config_lib
from vaeprior_jax.methods import base
from vaeprior_jax.methods import joint
from vaeprior_jax.methods import objectives

# This component's config keys and their defaults (`config.declare`).
config_lib.declare(
    'train.method=two_stage',
    resumable=('train.second_stage_epochs',),
    train=dict(
        second_stage_epochs=400.0,  # method=two_stage: the second stage's budget,
        second_stage_learning_rate=1e-4,  # ... its Adam,
        second_stage_lr_decay_epochs=(),  # ... times lr_decay_factor at these (from its start)
    ),
)


GROUPS = ('first', 'second')


def _epochs_to_steps(epochs: float, steps_per_epoch: int) -> int:
  return int(math.ceil(epochs * steps_per_epoch))


class TwoStage(base.Method):
  """The two stages of Dai & Wipf (see the module docstring)."""

  name = 'two_stage'
  closed_form_kl = True

  def __init__(self, config, steps_per_epoch: int):
    super().__init__(config, steps_per_epoch)
    tc = config.train
    self._first_steps = 0 if tc.init_from else joint.num_train_steps(tc, steps_per_epoch)
    self._second_steps = _epochs_to_steps(tc.second_stage_epochs, steps_per_epoch)
    self._first_rate = joint.learning_rate_schedule(tc, steps_per_epoch)
    # The second stage's decay points count from its start; its optimizer reads the global step.
    boundaries = {self._first_steps + int(round(e * steps_per_epoch)): tc.lr_decay_factor
                  for e in tc.second_stage_lr_decay_epochs}
    self._second_rate = optax.piecewise_constant_schedule(tc.second_stage_learning_rate,
                                                          boundaries)
    self._beta = joint.beta_schedule(tc, steps_per_epoch)
    self._l2_weight = tc.l2_reg
    self._kl_estimate = tc.kl_estimate

  @classmethod
  def validate(cls, config):
    if not config.model.two_stage:
      raise ValueError('train.method=two_stage trains a two-stage model; set model.two_stage=True.')
    if not config.train.second_stage_learning_rate > 0:
      raise ValueError('train.second_stage_learning_rate must be > 0, got '
                       f'{config.train.second_stage_learning_rate!r}.')
    if config.train.second_stage_epochs <= 0:
      raise ValueError(f'train.second_stage_epochs must be > 0, got '
                       f'{config.train.second_stage_epochs}.')

  def partition(self, params):
    return {'first': params['first'], 'second': params['second']}

  def merge(self, groups):
    return {'first': groups['first'], 'second': groups['second']}

  def optimizers(self):
    return {'first': base.adam_at_global_step(self._first_rate),
            'second': base.adam_at_global_step(self._second_rate)}

  def phases(self):
    phases = []
    if self._first_steps:
      phases.append(base.Phase('stage_1', ('first',), 0, self._first_steps))
    phases.append(base.Phase('stage_2', ('second',), self._first_steps,
                             self._first_steps + self._second_steps))
    return phases

  def loss(self, model, params, model_state, trained, batch, rng, step):
    closed_form = self._kl_estimate == 'closed_form'
    if 'first' in trained:
      beta = self._beta(step)
      terms, model_state = base.apply_model(model, params, model_state, batch, rng, closed_form,
                                            True, method=model.log_weight_terms)
      rate = self._first_rate(step)
      gammas = objectives.gamma_metrics(params['first'], terms['log_px_z'], batch.shape[1:])
    else:
      beta = jnp.ones((), jnp.float32)
      terms, model_state = base.apply_model(model, params, model_state, batch, rng, closed_form,
                                            True, method=model.second_stage_terms)
      rate = self._second_rate(step - self._first_steps)
      gammas = objectives.gamma_metrics(params['second'], terms['log_px_z'],
                                        (model.second.prior.latent_dim,), '_z')
    loss, metrics = objectives.training_loss(terms, beta, objectives.l2_penalty(trained),
                                             self._l2_weight, False, self._kl_estimate)
    for group, key in (('first', 'gamma'), ('second', 'gamma_z')):  # Both, in both stages.
      if 'likelihood' in params[group]:
        metrics[key] = jnp.exp(params[group]['likelihood']['log_gamma'])
    metrics.update(beta=beta, learning_rate=rate, **gammas)
    return loss, metrics, model_state

  def initial_variables(self, model, batch, key, train_images, mesh):
    variables = super().initial_variables(model, batch, key, train_images, mesh)
    init_from = self.config.train.init_from
    if not init_from:
      return variables
    from vaeprior_jax import checkpoints  # pylint: disable=g-import-not-at-top
    trained, restored, step = checkpoints.restore_run(init_from, batch.shape[1:], variables=True)
    if trained.model.two_stage:  # A two-stage run: its first stage, in each collection.
      restored = {k: v['first'] for k, v in restored.items() if 'first' in v}
    first = restored['params']
    if jax.tree.structure(first) != jax.tree.structure(variables['params']['first']):
      raise ValueError(f'train.init_from={init_from}: its first stage has other parameters than '
                       'this model.first (model.net, latent_dim and likelihood must match).')
    logging.info('Starting from the first stage of %s at step %d; stage 1 is skipped.', init_from,
                 step)
    replicated = NamedSharding(mesh, PartitionSpec())
    out = dict(variables)
    for collection, tree in variables.items():
      if collection in restored:
        out[collection] = jax.device_put(dict(tree, first=restored[collection]), replicated)
    return out

  def describe(self):
    return ', '.join(f'{p.name} ({p.groups[0]}, {(p.end - p.start) / self.steps_per_epoch:g} epochs)'
                     for p in self.phases())


base.REGISTRY.register('two_stage', TwoStage)
