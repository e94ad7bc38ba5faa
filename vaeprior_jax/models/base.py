"""What every model shares: `LatentVariableModel` (the ELBO, importance weights, reconstructions and
samples from a model's `log_weight_terms`, `sample_posterior`, `decode` and `prior_encoder`), how
nets are called and variables passed, and image sampling for any model."""

from typing import Dict, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vaeprior_jax import likelihoods
from vaeprior_jax import priors
from vaeprior_jax.variables import as_variables

Array = jax.Array


class LatentVariableModel(nn.Module):
  """What the one-level `VAE` and the two-level `HierarchicalVAE` share: the ELBO, the importance
  weights, reconstructions, samples and the prior, from each model's `log_weight_terms`,
  `sample_posterior`, `decode` and `prior_encoder`.

  A model's latent z is one vector [..., latent_size] (for the two-level model, Concat[z1, z2]):
  `sample_posterior`, `sample_prior`, `prior_log_prob`, `posterior_mean` and `decode` all speak of it.
  """

  # What this kind of model adds to its evaluation (`hooks.EvaluationHooks`); None: nothing.
  evaluation_hooks = None

  @staticmethod
  def check_config(model_config, levels: int) -> None:
    """One-line errors for `config.model` settings this kind of model cannot take (`levels`: of
    its net), before any data is loaded (`models.validate`)."""
    del model_config, levels

  @property
  def autoregressive(self) -> bool:
    """Whether p(x|z) is autoregressive in x (PixelCNN decoders): its logits need x itself."""
    return getattr(self.decoder, 'autoregressive', False)

  @property
  def latent_levels(self) -> Tuple[Tuple[str, int], ...]:
    """(name, size) of the latent levels, in the order they are concatenated in z."""
    raise NotImplementedError

  def _likelihood(self) -> nn.Module:
    """The model's likelihood module; None stands for Bernoulli logits over [H, W, C]."""
    if self.likelihood is not None:
      return self.likelihood
    return likelihoods.Bernoulli(parent=None)  # Stateless; unbound, so not adopted as a submodule.

  def observation_log_prob(self, x: Array, out: Array) -> Array:
    """log p(x|z) from the decoder's output, [...], by the model's `likelihood`."""
    return self._likelihood().log_prob(x, out)

  def observation_mean(self, out: Array) -> Array:
    """E[x|z] from the decoder's output (Bernoulli: sigmoid of the logits)."""
    return self._likelihood().mean(out)

  def elbo(self, x: Array, rng: Array, beta: float = 1.0) -> Array:
    """Warm-up ELBO, one sample: log p(x|z) + beta (log p(z) - log q(z|x)), [B]."""
    t = self.log_weight_terms(x, rng)
    return t['log_px_z'] + beta * (t['log_pz'] - t['log_qz'])

  __call__ = elbo

  def log_importance_weight(self, x: Array, rng: Array) -> Array:
    """log p(x|z) + log p(z) - log q(z|x) with z ~ q(z|x), [B]."""
    t = self.log_weight_terms(x, rng)
    return t['log_px_z'] + t['log_pz'] - t['log_qz']

  def reconstruct(self, x: Array, rng: Array) -> Array:
    """Means of p(x|z), z ~ q(z|x): [B, H, W, C]."""
    return self.observation_mean(self.decode(self.sample_posterior(x, rng), x))

  def sample(self, rng: Array, num_samples: int) -> Array:
    """Means of p(x|z), z ~ p(z): [num_samples, H, W, C] (non-autoregressive decoders)."""
    return self.observation_mean(self.decode(self.sample_prior(rng, num_samples)))

  def prior_context(self) -> priors.PriorContext:
    """What this model offers its prior (see `priors.PriorContext`)."""
    decode_mean = None
    if not self.autoregressive:
      decode_mean = lambda z: self.observation_mean(self.decode(z))
    return priors.PriorContext(encoder=self.prior_encoder, decode_mean=decode_mean, model=self)

  def top_prior_log_prob(self, z: Array) -> Array:
    """log p(z) of the prior module, given this model's context, [...]."""
    return self.prior.log_prob(z, self.prior_context())

  def sample_top_prior(self, rng: Array, num_samples: int) -> Array:
    return self.prior.sample(rng, num_samples, self.prior_context())


def _check_decoder_input(autoregressive: bool, x):
  if autoregressive and x is None:
    raise ValueError('An autoregressive decoder needs x: sample with models.sample_images.')



def decode_images(model: LatentVariableModel, params, z: Array, rng: Array,
                  image_shape: Tuple[int, int, int]) -> Array:
  """Images [N, H, W, C] of Bernoulli means for latents z [N, d].

  Non-autoregressive decoders: the means of p(x|z). Autoregressive (PixelCNN) decoders: pixels are
  drawn one at a time in raster order, x_i ~ p(x_i | x_<i, z) (H*W*C decoder passes), and the image
  returned holds each pixel's mean p(x_i = 1 | x_<i, z) given the pixels drawn before it.
  """
  if not model.autoregressive:
    return model.apply(as_variables(params), z,
                       method=lambda m, z_: m.observation_mean(m.decode(z_)))
  num_samples = z.shape[0]
  shape = (num_samples,) + tuple(image_shape)
  size = int(np.prod(image_shape))
  uniforms = jax.random.uniform(rng, (num_samples, size))

  def body(i, carry):
    x, means = carry
    probs = jax.nn.sigmoid(model.apply(as_variables(params), z, x, method='decode'))
    p_i = probs.reshape(num_samples, size)[:, i]
    x = x.reshape(num_samples, size).at[:, i].set((uniforms[:, i] < p_i).astype(x.dtype))
    means = means.at[:, i].set(p_i)
    return x.reshape(shape), means

  _, means = jax.lax.fori_loop(0, size, body, (jnp.zeros(shape, jnp.float32),
                                               jnp.zeros((num_samples, size), jnp.float32)))
  return means.reshape(shape)


def sample_images(model: LatentVariableModel, params, rng: Array, num_samples: int,
                  image_shape: Tuple[int, int, int]) -> Array:
  """Samples x ~ p(x): z ~ p(z), then `decode_images` (autoregressive decoders draw pixels)."""
  prior_key, pixel_key = jax.random.split(rng)
  z = model.apply(as_variables(params), prior_key, num_samples, method='sample_prior')
  return decode_images(model, params, z, pixel_key, image_shape)


def init_variables(model, batch: Array, key: Array) -> Dict:
  """model.init through `elbo` on a data batch (the flows' ActNorm layers take their initial values
  from it): {'params': ..., and any other collections}."""
  param_key, sample_key = jax.random.split(key)
  return dict(model.init({'params': param_key}, batch, sample_key, method=model.elbo))
