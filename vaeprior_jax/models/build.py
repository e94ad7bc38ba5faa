"""Building a model from a `config.model` section: its parts looked up by name in the registries."""

from typing import Tuple

from vaeprior_jax import config as config_lib
from vaeprior_jax import likelihoods
from vaeprior_jax.models.base import LatentVariableModel
from vaeprior_jax.models.hierarchical import HierarchicalVAE
from vaeprior_jax.models import two_stage
from vaeprior_jax.models.vae import VAE
from vaeprior_jax import nets
from vaeprior_jax import posteriors
from vaeprior_jax import priors


# The library's own nets; `nets.REGISTRY.names()` also lists those user code registered.
NETS = (nets.xu_nets.NETS + ('gated_mlp',) + nets.tomczak_nets.NETS + nets.dai_nets.NETS
        + nets.vaepp_nets.NETS)


def net_levels(model_config) -> int:
  """The latent levels of `model.net`'s model (its entry's `levels`: 2 for a two-level net)."""
  return int(nets.REGISTRY.info(model_config.net).get('levels', 1))


def is_hierarchical(model_config) -> bool:
  """Whether `config.model.net` is a two-level net (a `HierarchicalVAE`)."""
  return net_levels(model_config) == 2


def model_class(model_config):
  """The class `create` builds for `config.model` (`VAE`, `HierarchicalVAE` or `TwoStageVAE`),
  without building it."""
  if model_config.two_stage:
    return two_stage.TwoStageVAE
  return HierarchicalVAE if is_hierarchical(model_config) else VAE


# The registries a config's model names, by key.
_PARTS = (('net', nets.REGISTRY), ('prior', priors.REGISTRY), ('posterior', posteriors.REGISTRY),
          ('likelihood', likelihoods.REGISTRY))


def validate(model_config):
  """Raises ValueError naming the first bad value of `config.model` and what is allowed: unknown
  names, then the settings each named part checks (its entry's `validate`), then the model's."""
  model_config = config_lib.complete_section(model_config, 'model')
  for key, table in _PARTS:
    table.check(model_config[key])
  if model_config.latent_dim < 1:
    raise ValueError(f'model.latent_dim must be >= 1, got {model_config.latent_dim}.')
  if model_config.z1_dim < 0:
    raise ValueError(f'model.z1_dim must be >= 0 (0: model.latent_dim), got {model_config.z1_dim}.')
  levels = net_levels(model_config)
  if levels not in (1, 2):
    raise ValueError(f'model.net={model_config.net} is registered with levels={levels}; allowed: 1, 2.')
  for key, table in _PARTS:
    check = table.info(model_config[key]).get('validate')
    if check:
      check(model_config)
  model_class(model_config).check_config(model_config, levels)
  backend = model_config.conv_backend
  if backend not in nets.CONV_BACKENDS:
    raise ValueError(f'Unknown model.conv_backend {backend!r}; allowed: '
                     f'{", ".join(nets.CONV_BACKENDS.names())}.')
  reason = nets.CONV_BACKENDS.get(backend).unavailable_reason()
  if reason:
    raise ValueError(f'model.conv_backend={backend} cannot run here: {reason}')


def create(model_config, input_shape: Tuple[int, ...]) -> LatentVariableModel:
  """Builds the model described by `config.model`, its parts looked up by name in the registries
  (user code may register more: see `registry`).

  Keys: net (`nets.REGISTRY`: dense|conv|resnet|pixel|gated_mlp|infogan|dai_resnet give a `VAE`;
  hvae|convhvae|pixelhvae a `HierarchicalVAE`), prior (`priors.REGISTRY`: standard|realnvp|mog|vampprior|vampprior_data; of z2
  in the two-level models), posterior (`posteriors.REGISTRY`: gaussian|realnvp), likelihood
  (`likelihoods.REGISTRY`: bernoulli (default)|gaussian), latent_dim (of z, or of z2), flow_depth, and
  optionally z1_dim (0: latent_dim), num_components (500: mixture components or pseudo-inputs),
  flow_hidden_units (256), flow_unroll (1: RealNVP blocks per scan iteration; flow_depth unrolls the
  loop entirely), coupling_scale_bias (2.0), negative_slope (0.2), pixelcnn_layers (3),
  pixelcnn_features (0: C + 32), conv_backend (`nets.CONV_BACKENDS`: 'xla', or a CPU-only one of
  `vaeprior_jax.cpu`), and for the Gaussian likelihood learn_gamma (True), log_gamma (0.0) and
  mean_activation ('identity').
  """
  model_config = config_lib.complete_section(model_config, 'model')
  validate(model_config)
  input_shape = tuple(int(s) for s in input_shape)
  cls = model_class(model_config)
  if cls is two_stage.TwoStageVAE:
    return two_stage.build(model_config, input_shape, create)
  parts = dict(nets.REGISTRY.get(model_config.net)(model_config, input_shape))
  prior = priors.from_config(model_config, input_shape)
  likelihood = likelihoods.create(model_config, input_shape)
  two_level = 'encoder_z2' in parts
  if two_level != (cls is HierarchicalVAE):
    raise ValueError(f'model.net={model_config.net} is registered with levels='
                     f'{net_levels(model_config)} but its builder returned the nets of a '
                     f'{"two" if two_level else "one"}-level model ({", ".join(sorted(parts))}).')
  if cls is HierarchicalVAE:
    return HierarchicalVAE(prior=prior, likelihood=likelihood, **parts)
  return VAE(prior=prior, posterior=posteriors.from_config(model_config), likelihood=likelihood,
             **parts)
