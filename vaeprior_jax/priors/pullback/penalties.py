"""Gradient penalties R(D) that keep a critic D (a discriminator on data space) near-Lipschitz, as
VAEPP uses them (its Table 3), for real data x and generated data x~ of the same shape [B, ...]:

  wgan_gp     weight * mean_i (|grad D(x^_i)| - 1)^2 at interpolates x^_i = x~_i + u_i (x_i - x~_i),
              u_i ~ U(0, 1) per example (Gulrajani et al., 2017; weight 10);
  wgan_div_1  weight * mean_i |grad D(x^_i)|^k at the same interpolates (Wu et al., 2018; VAEPP's
              default, weight 2);
  wgan_div_2  weight / 2 * (mean_i |grad D(x_i)|^k + mean_i |grad D(x~_i)|^k), at the real and at the
              generated points themselves.

|.| is the Euclidean norm of the gradient over all of an example's axes. The exponent k on that norm
is `exponent`; None takes the authors' code's value for the kind. Their code (chenwenxiao/
adversarial-prior-vae, `get_gradient_penalty`, gradient_penalty_index p = 6) computes the
interpolate penalty as |grad|^(p/2) = |grad|^3 but the real-and-fake one as (|grad|^2)^(p/2) =
|grad|^6; Wu et al. write |grad|^p with p = 6 for both. `CODE_EXPONENTS` holds the code's values (the
defaults); pass exponent=6 for Wu et al.'s.

Each penalty is differentiable with respect to D's parameters (double backprop through `jax.grad`),
which is how the critic's training step uses it.
"""

from typing import Callable, Optional

import jax
import jax.numpy as jnp

Array = jax.Array

KINDS = ('wgan_gp', 'wgan_div_1', 'wgan_div_2')
# The exponent on the gradient norm in the authors' code for each kind (see the module docstring).
CODE_EXPONENTS = {'wgan_gp': 2.0, 'wgan_div_1': 3.0, 'wgan_div_2': 6.0}
# The weights of the papers (and the code): WGAN-GP's lambda = 10, WGAN-div's k = 2.
DEFAULT_WEIGHTS = {'wgan_gp': 10.0, 'wgan_div_1': 2.0, 'wgan_div_2': 2.0}


def check_kind(kind: str, key: str = 'gradient penalty') -> None:
  if kind not in KINDS:
    raise ValueError(f'Unknown {key} {kind!r}; allowed: {", ".join(KINDS)}.')


def squared_gradient_norms(critic: Callable[[Array], Array], x: Array) -> Array:
  """|grad_x D(x_i)|^2 per example, [B]; `critic` maps [B, ...] to [B] with examples independent."""
  grads = jax.grad(lambda v: jnp.sum(critic(v)))(x)
  return jnp.sum(jnp.square(grads.reshape(grads.shape[0], -1)), axis=-1)


def _norm_power(squared_norms: Array, k: float) -> Array:
  """|g|^k from |g|^2, as (|g|^2)^(k/2): differentiable at g = 0 for k > 1, where |g| = sqrt(.)
  is not."""
  return squared_norms ** (k / 2.0)


def interpolates(real: Array, fake: Array, rng: Array) -> Array:
  """x~ + u (x - x~) with u ~ U(0, 1), one u per example."""
  u = jax.random.uniform(rng, (real.shape[0],) + (1,) * (real.ndim - 1), real.dtype)
  return fake + u * (real - fake)


def gradient_penalty(critic: Callable[[Array], Array], real: Array, fake: Array, rng: Array,
                     kind: str = 'wgan_div_1', weight: Optional[float] = None,
                     exponent: Optional[float] = None) -> Array:
  """R(D) of `kind` (see the module docstring), a scalar.

  Args:
    critic: D, [B, ...] -> [B], examples independent (no batch statistics in training mode).
    real, fake: [B, ...] each, paired by index for the interpolates.
    rng: the key of the interpolation weights (unused by wgan_div_2).
    weight: None: `DEFAULT_WEIGHTS[kind]`.
    exponent: k on the gradient norm; None: `CODE_EXPONENTS[kind]`.
  """
  check_kind(kind)
  if real.shape != fake.shape:
    raise ValueError(f'real and fake must have one shape, got {real.shape} and {fake.shape}.')
  weight = DEFAULT_WEIGHTS[kind] if weight is None else weight
  k = CODE_EXPONENTS[kind] if exponent is None else exponent
  if kind == 'wgan_gp':
    # The 1e-12 keeps the square root differentiable where the gradient vanishes.
    norms = jnp.sqrt(squared_gradient_norms(critic, interpolates(real, fake, rng)) + 1e-12)
    return weight * jnp.mean(jnp.abs(norms - 1.0) ** k)
  if kind == 'wgan_div_1':
    return weight * jnp.mean(
        _norm_power(squared_gradient_norms(critic, interpolates(real, fake, rng)), k))
  return weight / 2.0 * (jnp.mean(_norm_power(squared_gradient_norms(critic, real), k))
                         + jnp.mean(_norm_power(squared_gradient_norms(critic, fake), k)))
