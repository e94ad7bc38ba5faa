"""Tomczak & Welling's two-level VAE."""

from typing import Dict, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from vaeprior_jax import distributions
from vaeprior_jax import hooks
from vaeprior_jax.models.base import LatentVariableModel, _check_decoder_input
from vaeprior_jax import posteriors

Array = jax.Array


def check_config(model_config, levels: int = 2) -> None:
  """The two-level model's settings: one-line errors."""
  del levels
  if model_config.posterior != 'gaussian':
    raise ValueError(f'model.net={model_config.net} has Gaussian posteriors q(z1|x, z2) q(z2|x); it '
                     f'needs model.posterior=gaussian, got {model_config.posterior!r}.')


class _HierarchicalHooks(hooks.EvaluationHooks):
  grey_proposal = False  # Its encoders read x itself.


class HierarchicalVAE(LatentVariableModel):
  """Tomczak & Welling's two-level VAE (Eqs. 10-15), for images x [B, H, W, C] (Bernoulli unless
  `likelihood` says otherwise):

    q(z1, z2 | x) = q_phi(z1 | x, z2) q_psi(z2 | x),   p(x, z1, z2) = p_theta(x | z1, z2) p(z1 | z2) p(z2),

  all Gaussian with diagonal covariances but p(z2), which is `prior` (standard, MoG, VampPrior over
  q_psi(z2|u_k), or RealNVP). The latent z of the shared interface is Concat[z1, z2] [.., M1 + M2], and
  log_weight_terms gives log p(z) = log p(z1|z2) + log p(z2) and log q(z|x) = log q(z1|x,z2) +
  log q(z2|x), so the ELBO, the importance-weighted estimator and the trainers are those of `VAE`.
  """
  encoder_z2: nn.Module
  encoder_z1: nn.Module
  conditional_prior: nn.Module
  decoder: nn.Module
  prior: nn.Module
  z1_dim: int
  likelihood: Optional[nn.Module] = None  # None: Bernoulli logits over [H, W, C]

  evaluation_hooks = _HierarchicalHooks()
  check_config = staticmethod(check_config)

  @property
  def prior_encoder(self) -> nn.Module:
    return self.encoder_z2

  @property
  def latent_levels(self) -> Tuple[Tuple[str, int], ...]:
    return (('z1', self.z1_dim), ('z2', self.prior.latent_dim))

  def _split(self, z: Array) -> Tuple[Array, Array]:
    return z[..., :self.z1_dim], z[..., self.z1_dim:]

  def decode(self, z: Array, x: Optional[Array] = None, train: bool = False,
             dropout_rng: Optional[Array] = None) -> Array:
    """Bernoulli logits of p(x|z1, z2) [..., H, W, C] for z = Concat[z1, z2]."""
    z1, z2 = self._split(z)
    if not self.autoregressive:
      return self.decoder(z1, z2)
    _check_decoder_input(True, x)
    return self.decoder(z1, z2, x, deterministic=not train,
                        dropout_rng=dropout_rng if train else None)

  def _sample_z2_z1(self, x: Array, rng: Array):
    """z2 ~ q(z2|x), z1 ~ q(z1|x, z2), with their log-densities."""
    # Keys 2 and 3 (key 1 is the decoder's dropout key in log_weight_terms).
    z2_key, z1_key = jax.random.fold_in(rng, 2), jax.random.fold_in(rng, 3)
    mean2, log_std2 = self.encoder_z2(x)
    z2, log_q2 = posteriors.gaussian_sample(mean2, log_std2, z2_key)
    mean1, log_std1 = self.encoder_z1(x, z2)
    z1, log_q1 = posteriors.gaussian_sample(mean1, log_std1, z1_key)
    return z1, z2, log_q1 + log_q2

  def log_weight_terms(self, x: Array, rng: Array, return_latent: bool = False,
                       train: bool = False) -> Dict[str, Array]:
    """One (z1, z2) ~ q per example: {'log_px_z' = log p(x|z1,z2), 'log_pz' = log p(z1|z2) + log p(z2),
    'log_qz' = log q(z1|x,z2) + log q(z2|x)}, each [B] (and 'z' = Concat[z1, z2] [B, M1 + M2])."""
    z1, z2, log_qz = self._sample_z2_z1(x, rng)
    z = jnp.concatenate([z1, z2], axis=-1)
    logits = self.decode(z, x, train, jax.random.fold_in(rng, 1))
    terms = {
        'log_px_z': self.observation_log_prob(x, logits),
        'log_pz': self.prior_log_prob(z),
        'log_qz': log_qz,
    }
    if return_latent:
      terms['z'] = z
    return terms

  def sample_posterior(self, x: Array, rng: Array) -> Array:
    """Concat[z1, z2] ~ q(z1|x, z2) q(z2|x), [B, M1 + M2]."""
    z1, z2, _ = self._sample_z2_z1(x, rng)
    return jnp.concatenate([z1, z2], axis=-1)

  def posterior_mean(self, x: Array, rng: Array, num_samples: int = 1000) -> Array:
    """Concat[E_q[z1|x], E_q[z2|x]]: E_q[z2|x] exact, E_q[z1|x] = E_{z2 ~ q(z2|x)}[mean of q(z1|x, z2)]
    by Monte Carlo with `num_samples`."""
    mean2, log_std2 = self.encoder_z2(x)
    keys = jax.random.split(rng, num_samples)
    z2 = jax.vmap(lambda k: posteriors.gaussian_sample(mean2, log_std2, k)[0])(keys)
    mean1 = jnp.mean(self.encoder_z1(x, z2)[0], axis=0)
    return jnp.concatenate([mean1, mean2], axis=-1)

  def prior_log_prob(self, z: Array) -> Array:
    """log p(z1|z2) + log p(z2) for z = Concat[z1, z2] [..., M1 + M2]."""
    z1, z2 = self._split(z)
    mean1, log_std1 = self.conditional_prior(z2)
    return distributions.diag_normal_log_prob(z1, mean1, log_std1) + self.top_prior_log_prob(z2)

  def sample_prior(self, rng: Array, num_samples: int) -> Array:
    """Concat[z1, z2] with z2 ~ p(z2), z1 ~ p(z1|z2): [num_samples, M1 + M2]."""
    z2_key, z1_key = jax.random.split(rng)
    z2 = self.sample_top_prior(z2_key, num_samples)
    mean1, log_std1 = self.conditional_prior(z2)
    z1 = posteriors.gaussian_sample(mean1, log_std1, z1_key)[0]
    return jnp.concatenate([z1, z2], axis=-1)
