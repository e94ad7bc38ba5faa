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
