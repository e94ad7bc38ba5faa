"""Mixture priors: Tomczak & Welling's mixture of Gaussians (`mog`) and VampPrior (`vampprior`, and
`vampprior_data` with its pseudo-inputs fixed to training images)."""

from typing import Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from vaeprior_jax import config as config_lib
from vaeprior_jax import distributions
from vaeprior_jax.priors.base import REGISTRY, PriorContext, check_latent

Array = jax.Array

# This component's config keys and their defaults (`config.declare`).
config_lib.declare(
    'model.prior=mog|vampprior|vampprior_data',
    model=dict(
        num_components=500,  # MoG components / VampPrior pseudo-inputs
        pseudo_inputs_from_data=False,  # vampprior: start the pseudo-inputs at training images
    ),
)


class MixtureOfGaussiansPrior(nn.Module):
  """p(z) = (1/K) sum_k N(z; m_k, diag(s_k^2)) with learnable means and variances (Tomczak & Welling's
  MoG baseline). Means start as draws of N(0, I), standard deviations at 1."""
  latent_dim: int
  num_components: int

  def setup(self):
    self.means = self.param('means', nn.initializers.normal(1.0),
                            (self.num_components, self.latent_dim))
    self.log_stds = self.param('log_stds', nn.initializers.zeros,
                               (self.num_components, self.latent_dim))

  def log_prob(self, z: Array, ctx: Optional[PriorContext] = None) -> Array:
    del ctx
    check_latent(z, self.latent_dim, type(self).__name__)
    return distributions.diag_normal_mixture_log_prob(z, self.means, self.log_stds)

  def sample(self, rng: Array, num_samples: int, ctx: Optional[PriorContext] = None) -> Array:
    del ctx
    return distributions.sample_diag_normal_mixture(rng, self.means, self.log_stds, num_samples)


class VampPrior(nn.Module):
  """The VampPrior (Tomczak & Welling, 2018): p(z) = (1/K) sum_k q(z|u_k), K pseudo-inputs u_k.

  The module holds the pseudo-inputs; the components q(z|u_k) come from the model's own encoder,
  `ctx.encoder` (`VAE.prior_log_prob` / `VAE.sample_prior` pass the model's context). The encoder's
  outputs for the pseudo-inputs, (means, log_stds) each [K, latent_dim], may also be passed directly
  in place of ctx: `log_prob(z, means, log_stds)`. The pseudo-inputs are kept in the data range [0, 1]
  by a hard tanh (clipping, as the paper's code). With `trainable=False` (the `vampprior_data`
  variant) they receive no gradient. With `init_from_data`, training starts them at K random training
  images (`set_pseudo_inputs`).
  """
  latent_dim: int
  num_components: int
  input_shape: Tuple[int, int, int]
  trainable: bool = True
  init_from_data: bool = False

  def setup(self):
    self.raw_pseudo_inputs = self.param(
        'pseudo_inputs', nn.initializers.uniform(1.0),
        (self.num_components,) + tuple(self.input_shape))

  def pseudo_inputs(self) -> Array:
    u = jnp.clip(self.raw_pseudo_inputs, 0.0, 1.0)
    return u if self.trainable else jax.lax.stop_gradient(u)

  def components(self, ctx) -> Tuple[Array, Array]:
    """(means, log_stds) [K, latent_dim] of q(z|u_k), through the context's encoder."""
    if ctx is None or ctx.encoder is None:
      raise ValueError('The VampPrior is defined through the model\'s encoder: call it through the '
                       'model (VAE.prior_log_prob, VAE.sample_prior) or pass a PriorContext.')
    return ctx.encoder(self.pseudo_inputs())

  def log_prob(self, z: Array, ctx=None, log_stds: Optional[Array] = None) -> Array:
    check_latent(z, self.latent_dim, type(self).__name__)
    means, log_stds = (ctx, log_stds) if log_stds is not None else self.components(ctx)
    return distributions.diag_normal_mixture_log_prob(z, means, log_stds)

  def sample(self, rng: Array, num_samples: int, ctx=None,
             log_stds: Optional[Array] = None) -> Array:
    means, log_stds = (ctx, log_stds) if log_stds is not None else self.components(ctx)
    return distributions.sample_diag_normal_mixture(rng, means, log_stds, num_samples)


def set_pseudo_inputs(params, images) -> dict:
  """Returns `params` with the VampPrior's pseudo-inputs replaced by `images` [K, H, W, C]."""
  old = params['prior']['pseudo_inputs']
  images = jnp.asarray(images, old.dtype)
  if images.shape != old.shape:
    raise ValueError(f'Pseudo-inputs must have shape {old.shape}, got {images.shape}.')
  return dict(params, prior=dict(params['prior'], pseudo_inputs=images))


def _check_components(model_config) -> None:
  if model_config.num_components < 1:
    raise ValueError(f'model.num_components must be >= 1 with model.prior={model_config.prior}, '
                     f'got {model_config.num_components}.')


def _check_vampprior(model_config) -> None:
  _check_components(model_config)
  if model_config.posterior != 'gaussian':
    raise ValueError(f'model.prior={model_config.prior} is a mixture of the Gaussian posteriors '
                     f'q(z|u_k); it needs model.posterior=gaussian, got {model_config.posterior!r}.')


REGISTRY.register('mog', validate=_check_components, entry=lambda mc, input_shape: MixtureOfGaussiansPrior(
    mc.latent_dim, mc.num_components))
REGISTRY.register('vampprior', validate=_check_vampprior, entry=lambda mc, input_shape: VampPrior(
    mc.latent_dim, mc.num_components, tuple(input_shape), True,
    bool(mc.pseudo_inputs_from_data)))
REGISTRY.register('vampprior_data', validate=_check_vampprior, entry=lambda mc, input_shape: VampPrior(
    mc.latent_dim, mc.num_components, tuple(input_shape), False, True))
