"""Joint training (`train.method=joint`, the default): every parameter trained together on the
warm-up ELBO, with the papers' protocol.

loss = -mean(log p(x|z) - beta (log q(z|x) - log p(z))) + l2_reg * L2 (+ Reg[q(z)]), one z ~ q(z|x)
per example; beta rises linearly from `train.beta_start` to 1 over `train.warmup_epochs` (KL warm-up),
the L2 term is `methods.objectives.l2_penalty` of the non-linear kernels, Adam follows the piecewise constant
learning-rate schedule (`train.learning_rate`, times `train.lr_decay_factor` at each of
`train.lr_decay_epochs`), and with `train.normalize_gradients` each gradient tensor is first divided by
its norm (Tomczak & Welling). Where the model has a VampPrior whose pseudo-inputs start from data
(`vampprior_data`, or `model.pseudo_inputs_from_data`), they are set to K random training images.
"""

import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from vaeprior_jax import config as config_lib
from vaeprior_jax import data
from vaeprior_jax.methods import base
from vaeprior_jax.methods import objectives
from vaeprior_jax import priors
from vaeprior_jax import sharding


def beta_schedule(train_config, steps_per_epoch: int) -> Callable[[jax.Array], jax.Array]:
  """KL warm-up: beta rises linearly from beta_start to 1 over warmup_epochs, then stays at 1."""
  beta_start = train_config.beta_start
  warmup_steps = train_config.warmup_epochs * steps_per_epoch
  if warmup_steps <= 0:
    return lambda step: jnp.ones((), jnp.float32)
  return lambda step: jnp.minimum(
      1.0, beta_start + (1.0 - beta_start) * step.astype(jnp.float32) / warmup_steps)


def learning_rate_schedule(train_config, steps_per_epoch: int) -> optax.Schedule:
  """Piecewise constant: learning_rate, multiplied by lr_decay_factor at each of lr_decay_epochs."""
  boundaries = {int(round(e * steps_per_epoch)): train_config.lr_decay_factor
                for e in train_config.lr_decay_epochs}
  return optax.piecewise_constant_schedule(train_config.learning_rate, boundaries)


def normalize_per_tensor(eps: float = 1e-7) -> optax.GradientTransformation:
  """Divides each gradient tensor by its L2 norm (+ eps): the "Adam with normalized gradients" of
  Tomczak & Welling's code (AdamNormGrad), applied before Adam's moments."""

  def update_fn(updates, state, params=None):
    del params
    return jax.tree.map(lambda g: g / (jnp.sqrt(jnp.sum(jnp.square(g))) + eps), updates), state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


def make_optimizer(train_config, steps_per_epoch: int) -> optax.GradientTransformation:
  """Adam with the learning-rate schedule; with `train.normalize_gradients`, each gradient tensor is
  first divided by its norm (Tomczak & Welling)."""
  adam = base.adam_at_global_step(learning_rate_schedule(train_config, steps_per_epoch))
  if train_config.normalize_gradients:
    return optax.chain(normalize_per_tensor(), adam)
  return adam


def num_train_steps(train_config, steps_per_epoch: int) -> int:
  if train_config.num_steps > 0:
    return int(train_config.num_steps)
  return int(math.ceil(train_config.num_epochs * steps_per_epoch))


class Joint(base.Method):
  """One group, 'all', trained for the whole run on the warm-up ELBO (see the module docstring).

  `optimizer` replaces the config's Adam (e.g. from your own code); the run's `config` needs a
  `train` section, and `model` and `seed` for the pseudo-input hook.
  """

  name = 'joint'
  closed_form_kl = True

  def __init__(self, config, steps_per_epoch: int,
               optimizer: optax.GradientTransformation = None):
    super().__init__(config, steps_per_epoch)
    tc = config.train
    self._optimizer = optimizer or make_optimizer(tc, steps_per_epoch)
    self._beta = beta_schedule(tc, steps_per_epoch)
    self._learning_rate = learning_rate_schedule(tc, steps_per_epoch)
    self._l2_weight = tc.l2_reg
    self._use_reg = bool(tc.qz_regularizer)
    self._kl_estimate = tc.kl_estimate

  @classmethod
  def for_train_config(cls, train_config, steps_per_epoch: int,
                       optimizer: optax.GradientTransformation = None) -> 'Joint':
    """The method from a `config.train` section alone (no hooks need more; keys it leaves out take
    their defaults)."""
    return cls(config_lib.complete({'train': train_config}), steps_per_epoch, optimizer)

  def optimizers(self):
    return {'all': optax.with_extra_args_support(self._optimizer)}

  def phases(self):
    return [base.Phase('train', ('all',), 0,
                       num_train_steps(self.config.train, self.steps_per_epoch))]

  def loss(self, model, params, model_state, trained, batch, rng, step):
    beta = self._beta(step)
    return_latent = self._use_reg or self._kl_estimate == 'closed_form'
    terms, model_state = base.apply_model(model, params, model_state, batch, rng, return_latent,
                                          True, method=model.log_weight_terms)
    loss, metrics = objectives.training_loss(terms, beta, objectives.l2_penalty(trained),
                                             self._l2_weight, self._use_reg, self._kl_estimate)
    metrics.update(beta=beta, learning_rate=self._learning_rate(step),
                   **objectives.gamma_metrics(params, terms['log_px_z'], batch.shape[1:]))
    return loss, metrics, model_state

  def initial_variables(self, model, batch, key, train_images, mesh):
    variables = super().initial_variables(model, batch, key, train_images, mesh)
    if getattr(model.prior, 'init_from_data', False):
      variables = dict(variables, params=pseudo_inputs_from_data(
          variables['params'], train_images, self.config, mesh))
    return variables


def pseudo_inputs_from_data(params, train_images, config, mesh):
  """`params` with the VampPrior's pseudo-inputs set to K random training images (seeded by
  config.seed)."""
  k = config.model.num_components
  if k > len(train_images):
    raise ValueError(f'model.num_components {k} exceeds the {len(train_images)} training images the '
                     'pseudo-inputs are taken from.')
  rows = np.sort(np.random.default_rng(config.seed).choice(len(train_images), k, replace=False))
  images = sharding.replicate(data.to_float(train_images[rows]), mesh)
  return priors.set_pseudo_inputs(params, images)


base.REGISTRY.register('joint', Joint)
