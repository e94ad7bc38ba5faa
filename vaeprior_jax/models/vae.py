"""The one-level VAE: encoder, posterior, decoder, prior and likelihood."""

from typing import Dict, Optional, Tuple

import flax.linen as nn
import jax

from vaeprior_jax.models.base import LatentVariableModel, _check_decoder_input
from vaeprior_jax.variables import call_net

Array = jax.Array


class VAE(LatentVariableModel):
  """p(x, z) = p_theta(x|z) p_lambda(z) with q_phi(z|x), for images x [B, H, W, C] (Bernoulli unless
  `likelihood` says otherwise).

  Initialise through `elbo` (the default `__call__`) on a data batch: the flows' ActNorm layers take
  their initial values from it.
  """
  encoder: nn.Module
  decoder: nn.Module
  prior: nn.Module
  posterior: nn.Module
  likelihood: Optional[nn.Module] = None  # None: Bernoulli logits over [H, W, C]

  @property
  def prior_encoder(self) -> nn.Module:
    return self.encoder

  @property
  def latent_levels(self) -> Tuple[Tuple[str, int], ...]:
    return (('z', self.prior.latent_dim),)

  def decode(self, z: Array, x: Optional[Array] = None, train: bool = False,
             dropout_rng: Optional[Array] = None) -> Array:
    """Bernoulli logits of p(x|z) [..., H, W, C]; autoregressive decoders read x (teacher forcing) and
    use dropout when `train`."""
    if not self.autoregressive:
      return call_net(self.decoder, z, train=train)
    _check_decoder_input(True, x)
    return self.decoder(z, x, deterministic=not train, dropout_rng=dropout_rng if train else None)

  def log_weight_terms(self, x: Array, rng: Array, return_latent: bool = False,
                       train: bool = False, encoder_input: Optional[Array] = None
                       ) -> Dict[str, Array]:
    """One z ~ q(z|x) per example: {'log_px_z', 'log_pz', 'log_qz'}, each [B] (with
    `return_latent`, also 'z' [B, d] and the encoder's 'posterior_mean' and 'posterior_log_std').

    `train` puts the nets in training mode: the decoder's dropout (PixelCNN), with a key derived
    from rng, and batch statistics (nets with `has_train_mode`). `encoder_input`: what the encoder
    reads instead of x (VAEPP's code: the grey image e a binary x was drawn from; the weights then
    estimate p(x) with the proposal q(z|e)).
    """
    mean, log_std = call_net(self.encoder, x if encoder_input is None else encoder_input,
                             train=train)
    z, log_qz = self.posterior.sample_and_log_prob(mean, log_std, rng)
    logits = self.decode(z, x, train, jax.random.fold_in(rng, 1))
    terms = {
        'log_px_z': self.observation_log_prob(x, logits),
        'log_pz': self.prior_log_prob(z),
        'log_qz': log_qz,
    }
    if return_latent:
      terms.update(z=z, posterior_mean=mean, posterior_log_std=log_std)
    return terms

  def sample_posterior(self, x: Array, rng: Array) -> Array:
    """z ~ q(z|x), [B, latent_dim]."""
    mean, log_std = self.encoder(x)
    return self.posterior.sample_and_log_prob(mean, log_std, rng)[0]

  def posterior_mean(self, x: Array, rng: Array, num_samples: int = 1000) -> Array:
    """E_q[z|x], [B, latent_dim] (Monte Carlo with `num_samples` where it has no closed form)."""
    mean, log_std = self.encoder(x)
    return self.posterior.mean(mean, log_std, rng, num_samples)

  def prior_log_prob(self, z: Array) -> Array:
    """log p(z), [...] for z [..., d] (the VampPrior through this VAE's encoder)."""
    return self.top_prior_log_prob(z)

  def sample_prior(self, rng: Array, num_samples: int) -> Array:
    """z ~ p(z), [num_samples, d]."""
    return self.sample_top_prior(rng, num_samples)
