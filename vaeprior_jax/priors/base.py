"""Priors p(z): Flax modules with `log_prob(z, ctx=None) -> [...]` and
`sample(rng, num_samples, ctx=None) -> [num_samples, latent_dim]`.

`ctx` is the `PriorContext` a model passes to its prior: what the model offers a prior that is
defined through it (the VampPrior's components are the model's own q(z|u_k); a pull-back prior needs
the decoder). Priors with a density of their own ignore it, so they also work alone
(`prior.apply(variables, z, method='log_prob')`). Models call every prior the same way, never asking
which kind it is.

`model.prior` names a prior in `REGISTRY`; user code registers its own priors there (see `registry`).
This module holds the registry, the context and the standard normal; `realnvp`, `mixtures` and
`pullback` the learned priors, each registering itself on import.
"""

import dataclasses
from typing import Any, Callable, Optional, Tuple

import flax.linen as nn
import jax

from vaeprior_jax import config as config_lib
from vaeprior_jax import distributions
from vaeprior_jax import registry

Array = jax.Array

# Builders: (model_config, input_shape) -> prior module; `model_config` is the `config.model` section.
REGISTRY = registry.Registry('model.prior')


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


def check_latent(z: Array, latent_dim: int, name: str):
  if z.shape[-1] != latent_dim:
    raise ValueError(f'{name} expects z of shape [..., {latent_dim}], got {z.shape}.')


class StandardNormalPrior(nn.Module):
  """p(z) = N(z; 0, I)."""
  latent_dim: int

  def log_prob(self, z: Array, ctx: Optional[PriorContext] = None) -> Array:
    del ctx
    check_latent(z, self.latent_dim, type(self).__name__)
    return distributions.standard_normal_log_prob(z)

  def sample(self, rng: Array, num_samples: int, ctx: Optional[PriorContext] = None) -> Array:
    del ctx
    return jax.random.normal(rng, (num_samples, self.latent_dim))



REGISTRY.register('standard', lambda mc, input_shape: StandardNormalPrior(mc.latent_dim),
                  standard_normal=True)


def from_config(model_config, input_shape: Tuple[int, ...]) -> nn.Module:
  """The prior named by `model_config.prior`, from REGISTRY (missing keys from `config.defaults`)."""
  model_config = config_lib.complete_section(model_config, 'model')
  check = REGISTRY.info(model_config.prior).get('validate')
  if check:
    check(model_config)
  return REGISTRY.get(model_config.prior)(model_config, tuple(input_shape))


def create(name: str, latent_dim: int, flow_depth: int, flow_hidden_units: int = 256,
           flow_unroll: int = 1,
           scale_bias: float = 2.0, negative_slope: float = 0.2, num_components: int = 500,
           input_shape: Tuple[int, int, int] = (28, 28, 1)) -> nn.Module:
  """Builds the prior called `name` (a name of REGISTRY) from explicit settings."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  model_config = ml_collections.ConfigDict(dict(
      prior=name, latent_dim=latent_dim, flow_depth=flow_depth,
      flow_hidden_units=flow_hidden_units, flow_unroll=flow_unroll, coupling_scale_bias=scale_bias,
      negative_slope=negative_slope, num_components=num_components))
  return from_config(model_config, input_shape)
