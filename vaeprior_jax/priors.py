"""Priors p(z): Flax modules with `log_prob(z, ctx=None) -> [...]` and
`sample(rng, num_samples, ctx=None) -> [num_samples, latent_dim]`.

`ctx` is the `PriorContext` a model passes to its prior: what the model offers a prior that is
defined through it (the VampPrior's components are the model's own q(z|u_k); a pull-back prior needs
the decoder). Priors with a density of their own ignore it, so they also work alone
(`prior.apply(variables, z, method='log_prob')`). Models call every prior the same way, never asking
which kind it is.

`model.prior` names a prior in `REGISTRY`; user code registers its own priors there (see `registry`).
"""

import dataclasses
from typing import Any, Callable, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from vaeprior_jax import config as config_lib
from vaeprior_jax import distributions
from vaeprior_jax import flows
from vaeprior_jax import registry

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class PriorContext:
  """What a model offers its prior (fields are None where the model has no such part).

  encoder: x [..., H, W, C] -> (mean, log_std) of the Gaussian q(z|x) over the prior's latent (for the
    two-level model, q(z2|x)).
  decode_mean: z -> E[x|z] for the model's full latent z (non-autoregressive decoders).
  model: the bound model itself, for anything else (its other submodules and variables).
  """
  encoder: Optional[Callable[[Array], Tuple[Array, Array]]] = None
  decode_mean: Optional[Callable[[Array], Array]] = None
  model: Any = None


def _check_latent(z: Array, latent_dim: int, name: str):
  if z.shape[-1] != latent_dim:
    raise ValueError(f'{name} expects z of shape [..., {latent_dim}], got {z.shape}.')


class StandardNormalPrior(nn.Module):
  """p(z) = N(z; 0, I)."""
  latent_dim: int

  def log_prob(self, z: Array, ctx: Optional[PriorContext] = None) -> Array:
    del ctx
    _check_latent(z, self.latent_dim, type(self).__name__)
    return distributions.standard_normal_log_prob(z)

  def sample(self, rng: Array, num_samples: int, ctx: Optional[PriorContext] = None) -> Array:
    del ctx
    return jax.random.normal(rng, (num_samples, self.latent_dim))


class RealNVPPrior(nn.Module):
  """Learned prior p(z) = N(f(z); 0, I) |det df/dz| with f a RealNVP (Xu et al., Eq. 4).

  Sampling inverts the flow: w ~ N(0, I), z = f^{-1}(w).
  """
  latent_dim: int
  num_blocks: int
  hidden_units: int = 256
  scale_bias: float = 2.0
  negative_slope: float = 0.2
  unroll: int = 1

  def setup(self):
    self.flow = flows.RealNVP(self.num_blocks, self.hidden_units, self.scale_bias,
                              self.negative_slope, self.unroll)

  def log_prob(self, z: Array, ctx: Optional[PriorContext] = None) -> Array:
    del ctx
    _check_latent(z, self.latent_dim, type(self).__name__)
    w, log_det = self.flow.forward_and_log_det(z)
    return distributions.standard_normal_log_prob(w) + log_det

  def sample(self, rng: Array, num_samples: int, ctx: Optional[PriorContext] = None) -> Array:
    del ctx
    w = jax.random.normal(rng, (num_samples, self.latent_dim))
    return self.flow.inverse_and_log_det(w)[0]


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
    _check_latent(z, self.latent_dim, type(self).__name__)
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
    _check_latent(z, self.latent_dim, type(self).__name__)
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


# Builders: (model_config, input_shape) -> prior module; `model_config` is the `config.model` section.
REGISTRY = registry.Registry('model.prior')


def _flow_settings(model_config) -> dict:
  mc = model_config
  return dict(num_blocks=mc.flow_depth, hidden_units=mc.flow_hidden_units,
              scale_bias=mc.coupling_scale_bias, negative_slope=mc.negative_slope,
              unroll=mc.flow_unroll)


REGISTRY.register('standard', lambda mc, input_shape: StandardNormalPrior(mc.latent_dim))
REGISTRY.register('realnvp', lambda mc, input_shape: RealNVPPrior(mc.latent_dim,
                                                                  **_flow_settings(mc)))
REGISTRY.register('mog', lambda mc, input_shape: MixtureOfGaussiansPrior(
    mc.latent_dim, mc.num_components))
REGISTRY.register('vampprior', lambda mc, input_shape: VampPrior(
    mc.latent_dim, mc.num_components, tuple(input_shape), True,
    bool(mc.pseudo_inputs_from_data)))
REGISTRY.register('vampprior_data', lambda mc, input_shape: VampPrior(
    mc.latent_dim, mc.num_components, tuple(input_shape), False, True))

# The library's own priors (REGISTRY.names() also lists those user code registered).
PRIORS = ('standard', 'realnvp', 'mog', 'vampprior', 'vampprior_data')


def from_config(model_config, input_shape: Tuple[int, ...]) -> nn.Module:
  """The prior named by `model_config.prior`, from REGISTRY (missing keys from `config.defaults`)."""
  model_config = config_lib.complete_section(model_config, 'model')
  return REGISTRY.get(model_config.prior)(model_config, tuple(input_shape))


def create(name: str, latent_dim: int, flow_depth: int, flow_hidden_units: int = 256,
           flow_unroll: int = 1,
           scale_bias: float = 2.0, negative_slope: float = 0.2, num_components: int = 500,
           input_shape: Tuple[int, int, int] = (28, 28, 1)) -> nn.Module:
  """Builds the prior called `name` (a name of REGISTRY) from explicit settings."""
  if name not in REGISTRY:
    raise ValueError(f'Unknown prior {name!r}; allowed: {", ".join(REGISTRY.names())}.')
  import ml_collections  # pylint: disable=g-import-not-at-top
  model_config = ml_collections.ConfigDict(dict(
      prior=name, latent_dim=latent_dim, flow_depth=flow_depth,
      flow_hidden_units=flow_hidden_units, flow_unroll=flow_unroll, coupling_scale_bias=scale_bias,
      negative_slope=negative_slope, num_components=num_components))
  return from_config(model_config, input_shape)
