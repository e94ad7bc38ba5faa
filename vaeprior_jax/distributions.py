"""Log-densities used throughout the library (float32, summed over the event axes)."""

import math

import jax
import jax.numpy as jnp

_LOG_2PI = math.log(2.0 * math.pi)


def standard_normal_log_prob(z: jax.Array) -> jax.Array:
  """log N(z; 0, I), summed over the last axis: [..., d] -> [...]."""
  return -0.5 * jnp.sum(jnp.square(z) + _LOG_2PI, axis=-1)


def diag_normal_log_prob(z: jax.Array, mean: jax.Array, log_std: jax.Array) -> jax.Array:
  """log N(z; mean, diag(exp(2 log_std))), summed over the last axis."""
  eps = (z - mean) * jnp.exp(-log_std)
  return standard_normal_log_prob(eps) - jnp.sum(log_std, axis=-1)


def bernoulli_log_prob(x: jax.Array, logits: jax.Array, event_ndims: int) -> jax.Array:
  """log Bernoulli(x; sigmoid(logits)), summed over the last `event_ndims` axes.

  Uses log p = x * l - softplus(l), exact for x in {0, 1} and stable for large |l|.
  """
  log_p = x * logits - jax.nn.softplus(logits)
  return jnp.sum(log_p, axis=tuple(range(-event_ndims, 0)))


def diag_normal_mixture_log_prob(z: jax.Array, means: jax.Array, log_stds: jax.Array) -> jax.Array:
  """log (1/K) sum_k N(z; means[k], diag(exp(2 log_stds[k]))): z [..., d], means/log_stds [K, d].

  Computed with logsumexp over the components in float32 (a mixture of K = 500 narrow components
  underflows if the densities are summed directly).
  """
  z = z.astype(jnp.float32)
  per_component = diag_normal_log_prob(z[..., None, :], means.astype(jnp.float32),
                                       log_stds.astype(jnp.float32))
  return jax.nn.logsumexp(per_component, axis=-1) - math.log(means.shape[0])


def sample_diag_normal_mixture(rng: jax.Array, means: jax.Array, log_stds: jax.Array,
                               num_samples: int) -> jax.Array:
  """num_samples draws of the uniform mixture: a component uniformly at random, then its Gaussian."""
  component_key, noise_key = jax.random.split(rng)
  k = jax.random.randint(component_key, (num_samples,), 0, means.shape[0])
  eps = jax.random.normal(noise_key, (num_samples, means.shape[-1]), means.dtype)
  return means[k] + jnp.exp(log_stds[k]) * eps
