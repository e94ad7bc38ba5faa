"""What a user writes outside the package to extend it: a prior, a net with non-trainable state and a
training method, each registered by name. Imported by tests/e2e/extension_test.py, and by the binaries
through `--import=user_extension` (tests/ is on their path there)."""

from typing import List

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

import vaeprior_jax as vp
from vaeprior_jax import methods

# The contexts the prior was called with while tracing (the test checks what the model passed).
SEEN_CONTEXTS: List[object] = []


class ShiftedNormalPrior(nn.Module):
  """p(z) = N(z; shift, I) with a learned shift (zero at the start)."""
  latent_dim: int

  def setup(self):
    self.shift = self.param('shift', nn.initializers.zeros, (self.latent_dim,))

  def log_prob(self, z, ctx=None):
    SEEN_CONTEXTS.append(ctx)
    return vp.distributions.standard_normal_log_prob(z - self.shift)

  def sample(self, rng, num_samples, ctx=None):
    del ctx
    return jax.random.normal(rng, (num_samples, self.latent_dim)) + self.shift


class CountingDenseEncoder(nn.Module):
  """A dense encoder that keeps statistics of what it saw in the collection 'batch_stats' (updated
  where the collection is mutable, as in the train step; read-only elsewhere)."""
  latent_dim: int

  @nn.compact
  def __call__(self, x):
    if self.is_mutable_collection('batch_stats') or self.has_variable('batch_stats', 'count'):
      count = self.variable('batch_stats', 'count', lambda: jnp.zeros((), jnp.int32))
      mean = self.variable('batch_stats', 'input_mean', lambda: jnp.zeros((), jnp.float32))
      if self.is_mutable_collection('batch_stats') and not self.is_initializing():
        count.value += 1
        mean.value = 0.9 * mean.value + 0.1 * jnp.mean(x)
    return vp.nets.xu_nets.DenseEncoder(self.latent_dim, hidden_units=(32,), name='dense')(x)


class WarmThenFreezeEncoder(methods.Method):
  """Adam on the ELBO; for the first half of the steps everything trains, then the encoder is
  frozen (two groups, two phases)."""

  def partition(self, params):
    return {'encoder': params['encoder'], 'rest': {k: v for k, v in params.items()
                                                   if k != 'encoder'}}

  def merge(self, groups):
    return dict(groups['rest'], encoder=groups['encoder'])

  def optimizers(self):
    adam = optax.with_extra_args_support(optax.adam(self.config.train.learning_rate))
    return {'encoder': adam, 'rest': adam}

  def phases(self):
    n = self.config.train.num_steps
    return [methods.Phase('warm', ('encoder', 'rest'), 0, n // 2),
            methods.Phase('frozen_encoder', ('rest',), n // 2, n)]

  def loss(self, model, params, model_state, trained, batch, rng, step):
    elbo, model_state = methods.apply_model(model, params, model_state, batch, rng,
                                            method=model.elbo)
    loss = -jnp.mean(elbo)
    metrics = {'loss': loss, 'elbo': jnp.mean(elbo)}  # The log line shows those it is given.
    return loss, metrics, model_state


def _counting_dense_net(model_config, input_shape):
  return {'encoder': CountingDenseEncoder(model_config.latent_dim),
          'decoder': vp.nets.xu_nets.DenseDecoder(input_shape, hidden_units=(32,))}


vp.priors.REGISTRY.register('user_shifted_normal',
                            lambda mc, input_shape: ShiftedNormalPrior(mc.latent_dim), replace=True)
vp.nets.REGISTRY.register('user_counting_dense', _counting_dense_net, replace=True)
methods.REGISTRY.register('user_warm_then_freeze', WarmThenFreezeEncoder, replace=True)
