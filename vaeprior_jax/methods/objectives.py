"""Terms of the training objective besides the ELBO: L2 on the non-linear layers, and Reg[q(z)]."""

import jax
import jax.numpy as jnp


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


def training_loss(terms, beta, l2: jax.Array, l2_weight: float, use_qz_regularizer: bool):
  """The training loss and its metrics from `VAE.log_weight_terms` of a batch.

  loss = -mean(log p(x|z) - beta (log q(z|x) - log p(z))) + l2_weight * l2 (+ Reg[q(z)], which needs
  terms['z']). Metrics: loss, elbo (beta = 1), reconstruction, kl, l2 (and qz_reg).
  """
  kl = terms['log_qz'] - terms['log_pz']
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
