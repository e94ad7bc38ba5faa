"""Terms of the training objective besides the ELBO: L2 on the non-linear layers, and Reg[q(z)]."""

import math

import jax
import jax.numpy as jnp

from vaeprior_jax import likelihoods


def sum_of_squares(x: jax.Array) -> jax.Array:
  """sum(x**2) over all elements, as a matrix-vector product over the leading dimensions.

  Equal to jnp.sum(jnp.square(x)) up to float32 rounding. XLA:CPU compiles the sum of a whole matrix
  to slow reduce-window loops, while a product with a ones vector runs at memory bandwidth
  (benchmarks/LOG.md); elsewhere the two cost the same, so this one form serves every platform. The
  product is at full float32 precision. Vectors and scalars are summed directly.
  """
  if x.ndim < 2:
    return jnp.sum(jnp.square(x))
  squares = jnp.square(x).reshape(-1, x.shape[-1])
  ones = jnp.ones(squares.shape[0], squares.dtype)
  # HIGHEST: full float32 where the default would round to bf16 (TPU) or TF32 (GPU).
  return jnp.sum(jnp.matmul(ones, squares, precision=jax.lax.Precision.HIGHEST))


def l2_penalty(params) -> jax.Array:
  """0.5 * sum of squared kernels of the non-linear layers (modules named `hidden*`), as TF's l2_loss.

  These are the layers the paper regularises: the non-linear dense and convolutional layers of the
  encoder, the decoder and the flows' coupling networks (App. B.3); linear heads are left out. Any
  sub-tree of the parameters works (e.g. only the prior's, when only the prior is trained).
  """
  total = jnp.zeros((), jnp.float32)
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    names = [getattr(k, 'key', '') for k in path]
    if names[-1] == 'kernel' and any(str(n).startswith('hidden') for n in names[:-1]):
      total += 0.5 * sum_of_squares(leaf)
  return total


KL_ESTIMATES = ('sample', 'closed_form')


def gaussian_kl_to_standard(mean: jax.Array, log_std: jax.Array) -> jax.Array:
  """KL(N(mean, diag(exp(log_std))^2) || N(0, I)) per example, [...] for [..., d]:
  0.5 * sum(mean^2 + std^2 - 1 - 2 log_std)."""
  return 0.5 * jnp.sum(jnp.square(mean) + jnp.exp(2.0 * log_std) - 1.0 - 2.0 * log_std, axis=-1)


def training_loss(terms, beta, l2: jax.Array, l2_weight: float, use_qz_regularizer: bool,
                  kl_estimate: str = 'sample'):
  """The training loss and its metrics from `VAE.log_weight_terms` of a batch.

  loss = -mean(log p(x|z) - beta KL) + l2_weight * l2 (+ Reg[q(z)], which needs terms['z']).
  `kl_estimate` (`train.kl_estimate`): 'sample', the one-sample log q(z|x) - log p(z); or
  'closed_form', KL(q(z|x) || N(0, I)) from the Gaussian posterior's parameters (terms
  'posterior_mean' and 'posterior_log_std', which `log_weight_terms` returns with return_latent),
  as Dai & Wipf's code computes it. Metrics: loss, elbo (beta = 1), reconstruction, kl, l2 (and
  qz_reg).
  """
  if kl_estimate == 'closed_form':
    kl = gaussian_kl_to_standard(terms['posterior_mean'], terms['posterior_log_std'])
  elif kl_estimate == 'sample':
    kl = terms['log_qz'] - terms['log_pz']
  else:
    raise ValueError(f'Unknown KL estimate {kl_estimate!r}; allowed: {", ".join(KL_ESTIMATES)}.')
  loss = -jnp.mean(terms['log_px_z'] - beta * kl) + l2_weight * l2
  metrics = {'elbo': jnp.mean(terms['log_px_z'] - kl),
             'reconstruction': jnp.mean(terms['log_px_z']), 'kl': jnp.mean(kl), 'l2': l2}
  if use_qz_regularizer:  # Reg[q(z)], App. B.3.
    metrics['qz_reg'] = qz_regularizer(terms['z'])
    loss += metrics['qz_reg']
  metrics['loss'] = loss
  return loss, metrics


def qz_regularizer(z: jax.Array) -> jax.Array:
  """Reg[q(z)] of Xu et al., App. B.3: (1/D) sum_k Mean[z_k]^2 + (Var[z_k] - 1)^2.

  z: [B, D] samples z ~ q(z|x) of a batch; Mean and Var over the batch estimate those of the aggregated
  posterior q(z). Added to the loss, it pulls q(z) towards zero mean and unit variance.
  """
  if z.ndim != 2:
    raise ValueError(f'qz_regularizer expects z of shape [batch, latent_dim], got {z.shape}.')
  mean = jnp.mean(z, axis=0)
  var = jnp.mean(jnp.square(z - mean), axis=0)
  return jnp.mean(jnp.square(mean) + jnp.square(var - 1.0))


def gamma_metrics(params, log_px_z: jax.Array, event_shape, suffix: str = '') -> dict:
  """{'gamma', 'sqrt_mse'} (names + `suffix`) where `params` hold a learned Gaussian likelihood's
  'log_gamma', else {}. sqrt_mse = sqrt(batch mean of sum((x - mean)^2) / size), from the batch's
  log p(x|z) [B]: gamma's optimum with the decoder fixed, logged beside gamma so a reader sees
  whether gamma has reached it (Dai & Wipf)."""
  log_gamma = params.get('likelihood', {}).get('log_gamma')
  if log_gamma is None:
    return {}
  size = math.prod(event_shape)
  squared = likelihoods.Gaussian.squared_error(log_px_z, log_gamma, size)
  return {'gamma' + suffix: jnp.exp(log_gamma),
          'sqrt_mse' + suffix: jnp.sqrt(jnp.mean(squared) / size)}
