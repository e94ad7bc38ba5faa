"""A fifth paper, written entirely outside the package: what a researcher adds to bring their own
paper to the library. It has
  - a prior with a learned scale, p(z) = N(z; 0, s^2 I) (`fifth_scaled_normal`), with its own
    evaluation metric (the learned s) and its own kind of samples (decoded draws at s / 2);
  - a net (`fifth_mlp`: one hidden layer each way), which emits what any likelihood asks for;
  - a training method (`fifth_vae_then_prior`: the whole model for `train.fifth_vae_steps` steps,
    then the prior alone on the same ELBO), with a config key and a log-line field of its own;
  - a config file with tokens (`tests/fifth_paper/config.py`) and a paper number.
Imported by tests/e2e/fifth_paper_test.py and by the binaries through `--import=fifth_paper` (tests/ is
on their path there); nothing in vaeprior_jax names any of it.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

import vaeprior_jax as vp
from vaeprior_jax import config as config_lib
from vaeprior_jax import hooks
from vaeprior_jax import methods

# Its own config key, with its default, declared where the method is.
config_lib.declare('train.method=fifth_vae_then_prior', train=dict(
    fifth_vae_steps=2,  # steps that train the whole model; the prior alone after them
))

# The prior's sample kind: decoded draws of N(0, (s / 2)^2 I).
SHRUNK = 0.5


class ScaledNormalPrior(nn.Module):
  """p(z) = N(z; 0, s^2 I), log s a parameter (0 at the start)."""
  latent_dim: int

  def setup(self):
    self.log_scale = self.param('log_scale', nn.initializers.zeros, ())

  def log_prob(self, z, ctx=None):
    del ctx
    log_std = jnp.broadcast_to(self.log_scale, z.shape)
    return vp.distributions.diag_normal_log_prob(z, jnp.zeros_like(z), log_std)

  def sample(self, rng, num_samples, ctx=None):
    del ctx
    return jnp.exp(self.log_scale) * jax.random.normal(rng, (num_samples, self.latent_dim))


class ScaledNormalHooks(hooks.EvaluationHooks):
  """The prior's evaluation extras: the learned scale beside the likelihood, and shrunk samples."""

  def after_likelihood(self, model, variables, result, ctx, encoder_view):
    del model, result, ctx, encoder_view
    params = vp.models.as_variables(variables)['params']
    return {'prior_scale': float(jnp.exp(params['prior']['log_scale']))}

  def sample_kinds(self):
    shrunk = lambda m, k, n: m.observation_mean(m.decode(SHRUNK * m.sample_prior(k, n)))
    return {'shrunk_samples': (shrunk, 'shrunk_samples.png')}


class MLPEncoder(nn.Module):
  latent_dim: int
  units: int = 16

  @nn.compact
  def __call__(self, x):
    h = nn.relu(nn.Dense(self.units, name='hidden_0')(x.reshape(x.shape[:-3] + (-1,))))
    return vp.nets.base.GaussianHeads(self.latent_dim, name='heads')(h)


class MLPDecoder(nn.Module):
  output_shape: tuple  # (H, W, channels per pixel the likelihood needs)
  units: int = 16

  @nn.compact
  def __call__(self, z):
    h = nn.relu(nn.Dense(self.units, name='hidden_0')(z))
    size = self.output_shape[0] * self.output_shape[1] * self.output_shape[2]
    return nn.Dense(size, name='out')(h).reshape(z.shape[:-1] + tuple(self.output_shape))


def _mlp(model_config, input_shape):
  out = vp.likelihoods.output_channels(model_config, input_shape[-1])
  return {'encoder': MLPEncoder(model_config.latent_dim),
          'decoder': MLPDecoder(tuple(input_shape[:-1]) + (out,))}


class VAEThenPrior(methods.Method):
  """Adam on the ELBO: every parameter for `train.fifth_vae_steps` steps, then the prior alone."""

  log_fields = methods.Method.log_fields + (('prior_scale', 'scale', '%.3f'),)

  def partition(self, params):
    return {'prior': params['prior'], 'rest': {k: v for k, v in params.items() if k != 'prior'}}

  def merge(self, groups):
    return dict(groups['rest'], prior=groups['prior'])

  def optimizers(self):
    adam = optax.with_extra_args_support(optax.adam(self.config.train.learning_rate))
    return {'prior': adam, 'rest': adam}

  @classmethod
  def validate(cls, config):
    switch = config.train.fifth_vae_steps
    if not isinstance(switch, int) or switch < 1:
      raise ValueError(f'train.fifth_vae_steps must be an integer >= 1, got {switch!r}.')

  def phases(self):
    n, switch = self.config.train.num_steps, self.config.train.fifth_vae_steps
    phases = [methods.Phase('vae', ('prior', 'rest'), 0, min(switch, n))]
    if n > switch:
      phases.append(methods.Phase('prior', ('prior',), switch, n))
    return phases

  def loss(self, model, params, model_state, trained, batch, rng, step):
    elbo, model_state = methods.apply_model(model, params, model_state, batch, rng,
                                            method=model.elbo)
    loss = -jnp.mean(elbo)
    return loss, {'loss': loss, 'elbo': jnp.mean(elbo),
                  'prior_scale': jnp.exp(params['prior']['log_scale'])}, model_state


vp.priors.REGISTRY.register('fifth_scaled_normal',
                            lambda mc, input_shape: ScaledNormalPrior(mc.latent_dim),
                            evaluation_hooks=ScaledNormalHooks(), replace=True)
vp.nets.REGISTRY.register('fifth_mlp', _mlp, replace=True)
methods.REGISTRY.register('fifth_vae_then_prior', VAEThenPrior, replace=True)
