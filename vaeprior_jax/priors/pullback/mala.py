"""The Metropolis-adjusted Langevin algorithm (MALA) for any differentiable log-density.

One step from z, with step size a and g = grad log p(z):

    z' = z + a g + sqrt(2 a) eps,           eps ~ N(0, I),
    accept z' with probability min(1, p(z') q(z | z') / (p(z) q(z' | z))),
    log q(z' | z) = -|z' - z - a g|^2 / (4 a)  (+ a constant that cancels).

Without the accept/reject step this is the unadjusted Langevin algorithm, whose stationary law is
biased by O(a); with it, the target p is left exactly invariant for any a > 0 (the chain's law only
converges to p, at a rate set by a). `sample` runs many independent chains (the log-density is
vmapped over them) for a fixed number of steps under `lax.scan`, so it compiles once whatever the
number of steps, and reports each chain's acceptance rate.

Step size: fixed by default (VAEPP's code: 5e-5 to 1e-5 on MNIST-like data, a few hundred steps).
With `adapt_steps > 0`, the first `adapt_steps` steps tune log a towards `target_acceptance`
(0.574, optimal for MALA in high dimension; Roberts & Rosenthal, 1998) by the dual averaging of
Hoffman & Gelman (2014, Sec. 3.2; Stan's step-size adaptation), driven by the mean acceptance
probability over the chains; a then runs at the averaged iterate, which damps the iterates'
oscillations. Dual averaging moves a by orders of magnitude within tens of steps (tests: a start
10^4 times too small or too large is corrected in 100 steps; a Robbins-Monro rule with a fixed
small gain needs hundreds of steps per order). The adaptation steps do not leave p invariant (a changes with the chain), the ones
after them do, with the tuned a fixed. Report acceptance rates from the fixed phase only
(`MALAResult.acceptance_rate` counts only the steps after adaptation).
"""

import math
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

Array = jax.Array

# Acceptance probability the adaptation aims at (Roberts & Rosenthal, 1998: 0.574 for MALA).
TARGET_ACCEPTANCE = 0.574
# Dual averaging's constants (Hoffman & Gelman, 2014; Stan's defaults): the shrinkage towards
# log(10 a_0), its weight, the early iterations' damping and the averaging's decay.
_DA_GAMMA, _DA_T0, _DA_KAPPA = 0.05, 10.0, 0.75


class MALAResult(NamedTuple):
  """What `sample` returns.

  samples: the chains' last states, [num_chains, ...] (the shape of z0).
  log_prob: log p of the last states, [num_chains].
  acceptance_rate: per chain, the fraction of accepted proposals over the steps after adaptation,
    [num_chains].
  step_size: the step size used after adaptation (the fixed one without adaptation), [].
  trace: the states after every `trace_every`-th step, [num_traced, num_chains, ...], or None.
  """
  samples: Array
  log_prob: Array
  acceptance_rate: Array
  step_size: Array
  trace: Optional[Array]


def _sum_event(x: Array) -> Array:
  """Sums over all axes but the first (the chain axis)."""
  return jnp.sum(x.reshape(x.shape[0], -1), axis=-1)


def proposal_log_prob(z_to: Array, z_from: Array, grad_from: Array, step_size: Array) -> Array:
  """log q(z_to | z_from) up to a constant: -|z_to - z_from - a grad_from|^2 / (4 a), per chain."""
  return -_sum_event(jnp.square(z_to - z_from - step_size * grad_from)) / (4.0 * step_size)


def sample(log_prob_fn: Callable[[Array], Array], z0: Array, rng: Array, num_steps: int,
           step_size: float, adapt_steps: int = 0,
           target_acceptance: float = TARGET_ACCEPTANCE,
           trace_every: int = 0, metropolis: bool = True) -> MALAResult:
  """Runs MALA chains from z0.

  Args:
    log_prob_fn: z (one point, z0.shape[1:]) -> scalar log p(z) up to a constant; vmapped over the
      chains, so chains do not interact (a net applied to one point at a time).
    z0: the chains' starting points, [num_chains, ...].
    rng: a key; step t uses fold_in(rng, t).
    num_steps: MALA steps after adaptation (>= 0).
    step_size: a > 0 (the initial value when adapting).
    adapt_steps: steps before the `num_steps` ones that tune a (0: a fixed).
    target_acceptance: the mean acceptance probability over the chains the adaptation aims at.
    trace_every: keep the states after every k-th of the `num_steps` steps (0: none).
    metropolis: False drops the accept/reject step (the unadjusted Langevin algorithm; biased, for
      comparison only).
  """
  if num_steps < 0 or adapt_steps < 0:
    raise ValueError(f'num_steps and adapt_steps must be >= 0, got {num_steps}, {adapt_steps}.')
  if not step_size > 0:
    raise ValueError(f'step_size must be > 0, got {step_size}.')
  if trace_every < 0:
    raise ValueError(f'trace_every must be >= 0, got {trace_every}.')
  value_and_grad = jax.vmap(jax.value_and_grad(log_prob_fn))
  num_chains = z0.shape[0]

  def step(carry, t):
    z, log_p, grad, log_a = carry
    a = jnp.exp(log_a)
    key = jax.random.fold_in(rng, t)
    noise_key, accept_key = jax.random.split(key)
    noise = jax.random.normal(noise_key, z.shape, z.dtype)
    proposal = z + a * grad + jnp.sqrt(2.0 * a) * noise
    log_p_new, grad_new = value_and_grad(proposal)
    log_ratio = (log_p_new - log_p + proposal_log_prob(z, proposal, grad_new, a)
                 - proposal_log_prob(proposal, z, grad, a))
    # A proposal with a non-finite density (or ratio) is rejected.
    log_ratio = jnp.where(jnp.isfinite(log_ratio), log_ratio, -jnp.inf)
    accept_prob = jnp.exp(jnp.minimum(log_ratio, 0.0))
    if metropolis:
      accepted = jax.random.uniform(accept_key, (num_chains,)) < accept_prob
    else:
      accepted = jnp.ones((num_chains,), bool)
    expand = lambda m: m.reshape((num_chains,) + (1,) * (z.ndim - 1))
    z = jnp.where(expand(accepted), proposal, z)
    log_p = jnp.where(accepted, log_p_new, log_p)
    grad = jnp.where(expand(accepted), grad_new, grad)
    return (z, log_p, grad, log_a), (accepted, jnp.mean(accept_prob))

  log_p0, grad0 = value_and_grad(z0)
  carry = (z0, log_p0, grad0, jnp.asarray(math.log(step_size), jnp.float32))

  if adapt_steps:
    # Dual averaging: after step t (from 1), h = the running mean of (target - accept) with the
    # first t0 steps damped, log a = mu - sqrt(t) / gamma h, and the averaged iterate
    # log a_bar = t^-kappa log a + (1 - t^-kappa) log a_bar, which the fixed phase uses.
    mu = math.log(10.0 * step_size)

    def adapt(state, t):
      carry, h, log_a_bar = state
      carry, (_, mean_prob) = step(carry, t)
      t = (t + 1).astype(jnp.float32)
      eta = 1.0 / (t + _DA_T0)
      h = (1.0 - eta) * h + eta * (target_acceptance - mean_prob)
      log_a = mu - jnp.sqrt(t) / _DA_GAMMA * h
      weight = t ** -_DA_KAPPA
      log_a_bar = weight * log_a + (1.0 - weight) * log_a_bar
      return ((*carry[:3], log_a), h, log_a_bar), None

    (carry, _, log_a_bar), _ = jax.lax.scan(
        adapt, (carry, jnp.zeros((), jnp.float32), carry[3]), jnp.arange(adapt_steps))
    carry = (*carry[:3], log_a_bar)

  def run(carry, t):
    carry, (accepted, _) = step(carry, t)
    return carry, (accepted, carry[0] if trace_every else None)

  carry, (accepted, states) = jax.lax.scan(run, carry, adapt_steps + jnp.arange(num_steps))
  z, log_p, _, log_a = carry
  rate = (jnp.mean(accepted.astype(jnp.float32), axis=0) if num_steps
          else jnp.full((num_chains,), jnp.nan, jnp.float32))
  trace = states[trace_every - 1::trace_every] if trace_every else None
  return MALAResult(z, log_p, rate, jnp.exp(log_a), trace)
