"""Dai & Wipf's two-stage VAE: the model and the second stage's config."""

from typing import Dict, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from vaeprior_jax import config as config_lib
from vaeprior_jax import hooks
from vaeprior_jax.models import hierarchical
from vaeprior_jax.models.base import LatentVariableModel

Array = jax.Array

# This component's config keys and their defaults (`config.declare`).
config_lib.declare(
    'model.two_stage',
    model=dict(
        two_stage=False,  # Dai & Wipf: a second VAE on the first stage's latents
        second_stage_latent_dim=0,  # ... its latent size (0: latent_dim)
        second_stage_units=1024,  # ... (and net=second_stage): Dense width, 2048 for ResNets
        second_stage_layers=3,
    ),
)


# Dai & Wipf's FID protocol: 10,000 samples vs 10,000 test images, each generated image min-max
# normalised first (their script's `preprocess_fake_images(..., norm=True)`). The library's default
# for runs whose components declare no protocol.
hooks.QUALITY_PROTOCOLS.register(
    'two_stage', hooks.QualityProtocol(10000, 'test', 10000, normalize=True,
                                       description='10,000 samples vs 10,000 test images'),
    default=True)


class _TwoStageHooks(hooks.EvaluationHooks):
  """Dai & Wipf's protocol, and their baseline beside the two-stage samples: z ~ N(0, I)."""
  quality_protocol = 'two_stage'
  grey_proposal = False

  def sample_kinds(self):
    return {'first_stage_samples': (lambda m, k, n: m.first_stage_sample(k, n),
                                    'samples_first_stage.png')}


class TwoStageVAE(nn.Module):
  """Dai & Wipf's two-stage VAE: `first`, a VAE on the data with the standard-normal prior, and
  `second`, a VAE on the first stage's latents z = mu(x) + sigma(x) eps, with a Gaussian decoder
  whose learned scale is gamma_z.

  The shared interface (ELBO, importance weights, posterior, reconstructions, decode) is the first
  stage's, so the estimators and `evaluate` report the first stage's likelihood. Generation is
  two-stage: u ~ N(0, I), z = (second-stage decoder mean)(u) + gamma_z eps, x = first-stage decoder
  mean (`sample_prior`, `sample`); `first_stage_sample` is the baseline z ~ N(0, I). Initialise
  through `elbo` (the default `__call__`): it creates both stages' parameters.
  """
  first: LatentVariableModel
  second: LatentVariableModel

  autoregressive = False
  evaluation_hooks = _TwoStageHooks()

  @staticmethod
  def check_config(model_config, levels: int) -> None:
    check_config(model_config, levels)

  @property
  def prior(self) -> nn.Module:
    return self.first.prior

  @property
  def encoder(self) -> nn.Module:
    return self.first.encoder

  @property
  def latent_levels(self) -> Tuple[Tuple[str, int], ...]:
    return self.first.latent_levels

  def elbo(self, x: Array, rng: Array, beta: float = 1.0) -> Array:
    """The first stage's ELBO, [B] (at init, the second stage's parameters are created too)."""
    out = self.first.elbo(x, rng, beta)
    if self.is_initializing():
      self.second_stage_terms(x, rng)
    return out

  __call__ = elbo

  def log_weight_terms(self, x: Array, rng: Array, return_latent: bool = False,
                       train: bool = False) -> Dict[str, Array]:
    return self.first.log_weight_terms(x, rng, return_latent, train)

  def log_importance_weight(self, x: Array, rng: Array) -> Array:
    return self.first.log_importance_weight(x, rng)

  def second_stage_inputs(self, x: Array, rng: Array) -> Array:
    """z = mu(x) + sigma(x) eps from the first stage's encoder (inference mode, no gradient), a fresh
    eps per call: the second stage's training data, [B, latent_dim]."""
    mean, log_std = jax.lax.stop_gradient(self.first.encoder(x))
    return mean + jnp.exp(log_std) * jax.random.normal(rng, mean.shape, mean.dtype)

  def second_stage_terms(self, x: Array, rng: Array, return_latent: bool = False,
                         train: bool = False) -> Dict[str, Array]:
    """The second stage's `log_weight_terms` on `second_stage_inputs(x)` (keys folded from rng)."""
    z = self.second_stage_inputs(x, jax.random.fold_in(rng, 7))
    return self.second.log_weight_terms(z, jax.random.fold_in(rng, 8), return_latent, train)

  def sample_posterior(self, x: Array, rng: Array) -> Array:
    return self.first.sample_posterior(x, rng)

  def posterior_mean(self, x: Array, rng: Array, num_samples: int = 1000) -> Array:
    return self.first.posterior_mean(x, rng, num_samples)

  def decode(self, z: Array, x: Optional[Array] = None, train: bool = False,
             dropout_rng: Optional[Array] = None) -> Array:
    return self.first.decode(z, x, train, dropout_rng)

  def observation_mean(self, out: Array) -> Array:
    return self.first.observation_mean(out)

  def reconstruct(self, x: Array, rng: Array) -> Array:
    return self.first.reconstruct(x, rng)

  def prior_log_prob(self, z: Array) -> Array:
    """The first stage's log p(z) (N(0, I)): what its ELBO and NLL use."""
    return self.first.prior_log_prob(z)

  def sample_prior(self, rng: Array, num_samples: int) -> Array:
    """Two-stage: z = (second-stage decoder mean)(u) + gamma_z eps, u ~ N(0, I): [num_samples, d]."""
    second_key, noise_key = jax.random.split(rng)
    z_mean = self.second.sample(second_key, num_samples)
    gamma_z = self.second.likelihood.gamma()
    return z_mean + gamma_z * jax.random.normal(noise_key, z_mean.shape, z_mean.dtype)

  def sample(self, rng: Array, num_samples: int) -> Array:
    """Two-stage samples: means of the first stage's p(x|z) at z from `sample_prior`."""
    return self.first.observation_mean(self.first.decode(self.sample_prior(rng, num_samples)))

  def first_stage_sample(self, rng: Array, num_samples: int) -> Array:
    """The baseline: means of p(x|z) at z ~ N(0, I)."""
    return self.first.sample(rng, num_samples)


def second_stage_config(model_config):
  """The `config.model` of the second stage of a two-stage model: `second_stage` nets on latent
  vectors, the standard-normal prior, a Gaussian decoder with a learned gamma_z (log 0 at the start),
  `second_stage_latent_dim` latents (0: the first stage's latent_dim)."""
  mc = config_lib.complete_section(model_config, 'model')
  return config_lib.complete_section(dict(
      net='second_stage', prior='standard', posterior='gaussian', likelihood='gaussian',
      learn_gamma=True, log_gamma=0.0, mean_activation='identity',
      latent_dim=mc.second_stage_latent_dim or mc.latent_dim,
      second_stage_units=mc.second_stage_units, second_stage_layers=mc.second_stage_layers), 'model')


def check_config(model_config, levels: int) -> None:
  """The two-stage model's settings (`levels`: of the first stage's net): one-line errors; a
  two-level first stage's own checks first."""
  if levels == 2:
    hierarchical.check_config(model_config)
  if model_config.prior != 'standard' or model_config.posterior != 'gaussian':
    raise ValueError(f'model.two_stage=True trains the first stage with the standard prior and the '
                     f'Gaussian posterior; got model.prior={model_config.prior!r}, '
                     f'model.posterior={model_config.posterior!r}.')
  if levels != 1:
    raise ValueError(f'model.two_stage=True needs a one-level first stage; model.net='
                     f'{model_config.net} is a two-level model.')


def build(model_config, input_shape, create) -> TwoStageVAE:
  """The two-stage model of `model_config` (`create` builds each stage from its config)."""
  first_config = config_lib.complete_section(dict(model_config.to_dict(), two_stage=False), 'model')
  first = create(first_config, input_shape)
  second = create(second_stage_config(model_config), (first_config.latent_dim,))
  return TwoStageVAE(first=first, second=second)
