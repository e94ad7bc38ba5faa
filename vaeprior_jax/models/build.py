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


def is_hierarchical(model_config) -> bool:
  """Whether `config.model.net` is one of Tomczak & Welling's two-level models."""
  return model_config.net in nets.tomczak_nets.NETS


def validate(model_config):
  """Raises ValueError naming the first bad value of `config.model` and what is allowed."""
  model_config = config_lib.complete_section(model_config, 'model')
  for key, table in (('net', nets.REGISTRY), ('prior', priors.REGISTRY),
                     ('posterior', posteriors.REGISTRY)):
    table.check(model_config[key])
  likelihoods.REGISTRY.check(model_config.likelihood)
  uses_flow = 'realnvp' in (model_config.prior, model_config.posterior)
  if uses_flow and model_config.latent_dim < 2:
    raise ValueError(f'A RealNVP needs model.latent_dim >= 2, got {model_config.latent_dim}.')
  if uses_flow and model_config.flow_depth < 1:
    raise ValueError(f'model.flow_depth must be >= 1 with a RealNVP, got {model_config.flow_depth}.')
  if model_config.latent_dim < 1:
    raise ValueError(f'model.latent_dim must be >= 1, got {model_config.latent_dim}.')
  if model_config.z1_dim < 0:
    raise ValueError(f'model.z1_dim must be >= 0 (0: model.latent_dim), got {model_config.z1_dim}.')
  if model_config.prior in ('mog', 'vampprior', 'vampprior_data'):
    if model_config.num_components < 1:
      raise ValueError(f'model.num_components must be >= 1 with model.prior={model_config.prior}, '
                       f'got {model_config.num_components}.')
  if model_config.prior.startswith('vampprior') and model_config.posterior != 'gaussian':
    raise ValueError(f'model.prior={model_config.prior} is a mixture of the Gaussian posteriors '
                     f'q(z|u_k); it needs model.posterior=gaussian, got {model_config.posterior!r}.')
  if model_config.prior == 'pullback' and (is_hierarchical(model_config)
                                           or model_config.net == 'pixel'):
    raise ValueError(f'model.prior=pullback needs a one-level model with a non-autoregressive '
                     f'decoder (its density reads the decoder mean G(z)); got model.net='
                     f'{model_config.net}.')
  if is_hierarchical(model_config) and model_config.posterior != 'gaussian':
    raise ValueError(f'model.net={model_config.net} has Gaussian posteriors q(z1|x, z2) q(z2|x); it '
                     f'needs model.posterior=gaussian, got {model_config.posterior!r}.')
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
  if model_config.two_stage:
    return two_stage.build(model_config, input_shape, create, is_hierarchical)
  parts = dict(nets.REGISTRY.get(model_config.net)(model_config, input_shape))
  prior = priors.from_config(model_config, input_shape)
  likelihood = likelihoods.create(model_config, input_shape)
  if 'encoder_z2' in parts:  # A two-level net.
    return HierarchicalVAE(prior=prior, likelihood=likelihood, **parts)
  return VAE(prior=prior, posterior=posteriors.from_config(model_config), likelihood=likelihood,
             **parts)
