"""The VAE: encoder, posterior, decoder (Bernoulli) and prior, built from a `config.model` section."""

from typing import Dict, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vaeprior_jax import distributions
from vaeprior_jax import nets
from vaeprior_jax import posteriors
from vaeprior_jax import priors

Array = jax.Array


class VAE(nn.Module):
  """p(x, z) = p_theta(x|z) p_lambda(z) with q_phi(z|x), for Bernoulli observations x [B, H, W, C].

  Initialise through `elbo` (the default `__call__`) on a data batch: the flows' ActNorm layers take
  their initial values from it.
  """
  encoder: nn.Module
  decoder: nn.Module
  prior: nn.Module
  posterior: nn.Module

  @property
  def autoregressive(self) -> bool:
    """Whether p(x|z) is autoregressive in x (PixelCNN decoders): its logits need x itself."""
    return getattr(self.decoder, 'autoregressive', False)

  def decode(self, z: Array, x: Optional[Array] = None, train: bool = False,
             dropout_rng: Optional[Array] = None) -> Array:
    """Bernoulli logits of p(x|z) [..., H, W, C]; autoregressive decoders read x (teacher forcing) and
    use dropout when `train`."""
    if not self.autoregressive:
      return self.decoder(z)
    if x is None:
      raise ValueError('An autoregressive decoder needs x: sample with models.sample_images.')
    return self.decoder(z, x, deterministic=not train, dropout_rng=dropout_rng if train else None)

  def log_weight_terms(self, x: Array, rng: Array, return_latent: bool = False,
                       train: bool = False) -> Dict[str, Array]:
    """One z ~ q(z|x) per example: {'log_px_z', 'log_pz', 'log_qz'}, each [B] (and 'z' [B, d]).

    `train` turns on the decoder's dropout (PixelCNN), with a key derived from rng.
    """
    mean, log_std = self.encoder(x)
    z, log_qz = self.posterior.sample_and_log_prob(mean, log_std, rng)
    logits = self.decode(z, x, train, jax.random.fold_in(rng, 1))
    terms = {
        'log_px_z': distributions.bernoulli_log_prob(x, logits, event_ndims=3),
        'log_pz': self.prior_log_prob(z),
        'log_qz': log_qz,
    }
    if return_latent:
      terms['z'] = z
    return terms

  def sample_posterior(self, x: Array, rng: Array) -> Array:
    """z ~ q(z|x), [B, latent_dim]."""
    mean, log_std = self.encoder(x)
    return self.posterior.sample_and_log_prob(mean, log_std, rng)[0]

  def elbo(self, x: Array, rng: Array, beta: float = 1.0) -> Array:
    """Warm-up ELBO, one sample: log p(x|z) + beta (log p(z) - log q(z|x)), [B]."""
    t = self.log_weight_terms(x, rng)
    return t['log_px_z'] + beta * (t['log_pz'] - t['log_qz'])

  __call__ = elbo

  def log_importance_weight(self, x: Array, rng: Array) -> Array:
    """log p(x|z) + log p(z) - log q(z|x) with z ~ q(z|x), [B]."""
    t = self.log_weight_terms(x, rng)
    return t['log_px_z'] + t['log_pz'] - t['log_qz']

  def posterior_mean(self, x: Array, rng: Array, num_samples: int = 1000) -> Array:
    """E_q[z|x], [B, latent_dim] (Monte Carlo with `num_samples` where it has no closed form)."""
    mean, log_std = self.encoder(x)
    return self.posterior.mean(mean, log_std, rng, num_samples)

  def reconstruct(self, x: Array, rng: Array) -> Array:
    """Bernoulli means of p(x|z), z ~ q(z|x): [B, H, W, C]."""
    mean, log_std = self.encoder(x)
    z, _ = self.posterior.sample_and_log_prob(mean, log_std, rng)
    return jax.nn.sigmoid(self.decode(z, x))

  def sample(self, rng: Array, num_samples: int) -> Array:
    """Bernoulli means of p(x|z), z ~ p(z): [num_samples, H, W, C] (non-autoregressive decoders)."""
    return jax.nn.sigmoid(self.decode(self.sample_prior(rng, num_samples)))

  def _vamp_components(self) -> Tuple[Array, Array]:
    """The VampPrior's components: the encoder's (means, log_stds) of the pseudo-inputs, [K, d]."""
    return self.encoder(self.prior.pseudo_inputs())

  def prior_log_prob(self, z: Array) -> Array:
    """log p(z), [...] for z [..., d] (the VampPrior through this VAE's encoder)."""
    if isinstance(self.prior, priors.VampPrior):
      return self.prior.log_prob(z, *self._vamp_components())
    return self.prior.log_prob(z)

  def sample_prior(self, rng: Array, num_samples: int) -> Array:
    """z ~ p(z), [num_samples, d]."""
    if isinstance(self.prior, priors.VampPrior):
      return self.prior.sample(rng, num_samples, *self._vamp_components())
    return self.prior.sample(rng, num_samples)


def decode_images(model: VAE, params, z: Array, rng: Array,
                  image_shape: Tuple[int, int, int]) -> Array:
  """Images [N, H, W, C] of Bernoulli means for latents z [N, d].

  Non-autoregressive decoders: the means of p(x|z). Autoregressive (PixelCNN) decoders: pixels are
  drawn one at a time in raster order, x_i ~ p(x_i | x_<i, z) (H*W*C decoder passes), and the image
  returned holds each pixel's mean p(x_i = 1 | x_<i, z) given the pixels drawn before it.
  """
  if not model.autoregressive:
    return jax.nn.sigmoid(model.apply({'params': params}, z, method=VAE.decode))
  num_samples = z.shape[0]
  shape = (num_samples,) + tuple(image_shape)
  size = int(np.prod(image_shape))
  uniforms = jax.random.uniform(rng, (num_samples, size))

  def body(i, carry):
    x, means = carry
    probs = jax.nn.sigmoid(model.apply({'params': params}, z, x, method=VAE.decode))
    p_i = probs.reshape(num_samples, size)[:, i]
    x = x.reshape(num_samples, size).at[:, i].set((uniforms[:, i] < p_i).astype(x.dtype))
    means = means.at[:, i].set(p_i)
    return x.reshape(shape), means

  _, means = jax.lax.fori_loop(0, size, body, (jnp.zeros(shape, jnp.float32),
                                               jnp.zeros((num_samples, size), jnp.float32)))
  return means.reshape(shape)


def sample_images(model: VAE, params, rng: Array, num_samples: int,
                  image_shape: Tuple[int, int, int]) -> Array:
  """Samples x ~ p(x): z ~ p(z), then `decode_images` (autoregressive decoders draw pixels)."""
  prior_key, pixel_key = jax.random.split(rng)
  z = model.apply({'params': params}, prior_key, num_samples, method=VAE.sample_prior)
  return decode_images(model, params, z, pixel_key, image_shape)


def validate(model_config):
  """Raises ValueError naming the first bad value of `config.model` and what is allowed."""
  for key, allowed in (('net', nets.NETS), ('prior', priors.PRIORS),
                       ('posterior', posteriors.POSTERIORS)):
    if model_config[key] not in allowed:
      raise ValueError(f'Unknown model.{key} {model_config[key]!r}; allowed: {", ".join(allowed)}.')
  uses_flow = 'realnvp' in (model_config.prior, model_config.posterior)
  if uses_flow and model_config.latent_dim < 2:
    raise ValueError(f'A RealNVP needs model.latent_dim >= 2, got {model_config.latent_dim}.')
  if uses_flow and model_config.flow_depth < 1:
    raise ValueError(f'model.flow_depth must be >= 1 with a RealNVP, got {model_config.flow_depth}.')
  if model_config.latent_dim < 1:
    raise ValueError(f'model.latent_dim must be >= 1, got {model_config.latent_dim}.')
  if model_config.prior in ('mog', 'vampprior', 'vampprior_data'):
    if model_config.get('num_components', 500) < 1:
      raise ValueError(f'model.num_components must be >= 1 with model.prior={model_config.prior}, '
                       f'got {model_config.get("num_components")}.')
  if model_config.prior.startswith('vampprior') and model_config.posterior != 'gaussian':
    raise ValueError(f'model.prior={model_config.prior} is a mixture of the Gaussian posteriors '
                     f'q(z|u_k); it needs model.posterior=gaussian, got {model_config.posterior!r}.')


def create(model_config, input_shape: Tuple[int, int, int]) -> VAE:
  """Builds the VAE described by `config.model`.

  Keys: net (dense|conv|resnet|pixel), prior (standard|realnvp|mog|vampprior|vampprior_data),
  posterior (gaussian|realnvp), latent_dim, flow_depth, and optionally num_components (500: mixture
  components or pseudo-inputs), flow_hidden_units (256), coupling_scale_bias (2.0), negative_slope
  (0.2).
  """
  validate(model_config)
  get = lambda k, default: model_config.get(k, default)
  slope = get('negative_slope', 0.2)
  flow_kwargs = dict(flow_depth=model_config.flow_depth,
                     flow_hidden_units=get('flow_hidden_units', 256),
                     scale_bias=get('coupling_scale_bias', 2.0), negative_slope=slope)
  encoder, decoder = nets.create(model_config.net, model_config.latent_dim, input_shape, slope)
  return VAE(encoder=encoder, decoder=decoder,
             prior=priors.create(model_config.prior, model_config.latent_dim, **flow_kwargs,
                                 num_components=get('num_components', 500),
                                 input_shape=input_shape),
             posterior=posteriors.create(model_config.posterior, **flow_kwargs))
