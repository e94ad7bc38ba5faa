"""Estimates of the pull-back prior's partition function Z = integral of f(z) = p_base(z) e^{-beta D(G(z))}.

Two importance-sampling estimators (VAEPP, Sec. 3.4):

  prior-based      Z^ = mean_s exp(-beta D(G(eps_s))), eps_s ~ p_base: unbiased, but its variance
                   grows with KL(p_base || p), large once beta is (the paper's Sec. 5.1).
  posterior-based  Z^ = mean_{j, s} f(z_js) / q^(z_js), z_js ~ q(z|x_j), q^(z) = q(z|x_j) / N, over
                   training images x_j (N: the training set's real size).

The posterior-based estimator is the paper's evaluation estimator. Its expectation is
sum_j integral over supp q(.|x_j) of f: for the truncated normal posterior (supports: boxes B_j) that is
sum_j integral_{B_j} f, which is at least Z when the boxes cover f's mass (overlaps count once per
box), and at most Z where they leave some of it uncovered. For an untruncated posterior the
expectation is N Z, reached only through rare samples in the tails, which is why the estimate's
spread explodes with the plain normal (the paper's Sec. 5.1: variance 0.81 vs 0.00097 with 10^9
samples). `tests/priors/pullback_test.py` checks these expectations against quadrature in 2-D;
`ais_log_z_bounds` bounds log Z from both sides (`ais.py`).

Both are streamed: samples are drawn in chunks and folded into running log-mean-exp accumulators
(`estimators._chunked_sample_reduce`), so memory is set by the chunk, not by the number of samples;
the posterior-based one runs over the images in sharded batches. Each returns log Z^ and its standard
error (delta method: sd(Z^) / Z^, from the samples' second moment, per image for the posterior-based
one, whose per-image estimates are independent strata).
"""

import math
import time
from typing import Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np

from vaeprior_jax import interrupts
from vaeprior_jax import compiled
from vaeprior_jax.evaluation import estimators
from vaeprior_jax import variables as variables_lib

Array = jax.Array


def _prior_terms(m, rng, num_samples):
  """From eps ~ p_base: (D(G(eps)), the log-weights -beta D(G(eps)) = log f(eps) - log p_base(eps)),
  each [num_samples] (a model method)."""
  prior, ctx = m.prior, m.prior_context()
  d = prior.energy(prior.sample_base(rng, num_samples, ctx), ctx)
  return d, -prior.beta() * d


def _posterior_log_weight(m, x, rng):
  """log f(z) - log q(z|x), z ~ q(z|x), [B] (a model method; log N is added by the caller)."""
  mean, log_std = variables_lib.call_net(m.encoder, x)
  z, log_q = m.posterior.sample_and_log_prob(mean, log_std, rng)
  return m.prior.log_unnormalized(z, m.prior_context()) - log_q


def _with_square(log_w: Array) -> Dict[str, Array]:
  return {'log_weight': log_w, 'twice': 2.0 * log_w}


def _summary(lme: np.ndarray, lme2: np.ndarray, samples_per_stratum: int,
             log_scale: float = 0.0) -> Dict[str, float]:
  """log Z^ = log mean_j exp(lme_j) + log_scale and its standard error, from per-stratum
  log-mean-exps of the weights (lme) and of their squares (lme2), in float64."""
  lme, lme2 = np.asarray(lme, np.float64), np.asarray(lme2, np.float64)
  n = lme.size
  top = np.max(lme)
  log_z = top + np.log(np.mean(np.exp(lme - top)))
  # Var(Z^) / Z^2 = sum_j Var_s(w_j) / S / n^2 / Z^2, Var_s(w_j) = S/(S-1) (mean w^2 - (mean w)^2).
  s = samples_per_stratum
  rel = np.exp(lme2 - 2 * log_z) - np.exp(2 * lme - 2 * log_z)
  rel_var = np.sum(np.maximum(rel, 0.0)) / max(s - 1, 1) / n ** 2
  return {'log_z': float(log_z + log_scale), 'log_z_stderr': float(np.sqrt(rel_var)),
          'num_samples': int(n * s)}


def prior_log_z(model, variables, rng: Array, num_samples: int,
                chunk_size: int = 1000) -> Dict[str, float]:
  """The prior-based estimate: {'log_z', 'log_z_stderr', 'num_samples'}."""
  variables = variables_lib.as_variables(variables)

  @compiled.jit
  def run(variables, key):
    terms = lambda _, k: _with_square(model.apply(variables, k, 1, method=_prior_terms)[1])
    return estimators._chunked_sample_reduce(  # pylint: disable=protected-access
        terms, jnp.zeros((1,)), key, num_samples, chunk_size, ('log_weight', 'twice'))

  out = jax.device_get(run(variables, rng))
  return _summary(out['log_mean_exp'], out['log_mean_exp_twice'], num_samples)


def posterior_log_z_fn(model, samples_per_image: int, chunk_size: int):
  """Jitted (variables, x [B, ...], key) -> {'log_mean_exp', 'log_mean_exp_twice'} [B]: per image,
  the log-mean-exp over `samples_per_image` draws of log f(z) - log q(z|x) and of twice it."""

  @compiled.jit
  def batch(variables, x, key):
    terms = lambda x_, k: _with_square(model.apply(variables_lib.as_variables(variables), x_, k,
                                                   method=_posterior_log_weight))
    out = estimators._chunked_sample_reduce(  # pylint: disable=protected-access
        terms, x, key, samples_per_image, chunk_size, ('log_weight', 'twice'))
    return {'log_mean_exp': out['log_mean_exp'], 'log_mean_exp_twice': out['log_mean_exp_twice']}

  return batch


def posterior_log_z(model, variables, images: np.ndarray, rng: Array, mesh, num_train: int,
                    samples_per_image: int = 1000, chunk_size: int = 100,
                    batch_size: int = 128, batch_fn=None, partial_file=None,
                    protocol=None, remove_when_done: bool = True) -> Dict[str, float]:
  """The posterior-based estimate over `images` (host array [N, H, W, C], typically the whole training
  split; batch i uses fold_in(rng, i)), with q^(z) = q(z|x_j) / num_train:
  {'log_z', 'log_z_stderr', 'num_samples'}. `batch_fn` is a `posterior_log_z_fn` to reuse (it
  compiles once per batch shape). `partial_file`, `protocol`, `remove_when_done`: keep the per-image
  outputs so far, and continue from them (`estimators.split_outputs`)."""
  if num_train < 1:
    raise ValueError(f'num_train must be >= 1, got {num_train}.')
  batch_fn = batch_fn or posterior_log_z_fn(model, samples_per_image, chunk_size)
  outs = estimators.split_outputs(
      batch_fn, variables, images, rng, mesh, batch_size, partial_file=partial_file,
      protocol=dict(protocol or {}, samples_per_image=samples_per_image, chunk_size=chunk_size,
                    batch_size=batch_size, num_images=len(images), num_train=num_train),
      remove_when_done=remove_when_done)
  return _summary(outs['log_mean_exp'], outs['log_mean_exp_twice'], samples_per_image,
                  math.log(num_train))


def refresh_log_z(model, variables, dataset, config, mesh, key, seed: int = 0,
                  batch_size: int = 128, batch_fn=None, partial_file=None, protocol=None,
                  remove_when_done: bool = True):
  """(variables with the pull-back prior's log Z set from the posterior-based estimate over the
  training split of `dataset` (a `data.Dataset`): `eval.log_z_samples` per image over
  `eval.log_z_max_images` images (0: all; a subset seeded by `seed`), N = the split's size;
  {'log_z', 'log_z_stderr', 'log_z_num_samples', 'log_z_images', 'log_z_seconds'}).
  `batch_fn`: a `posterior_log_z_fn` of these settings to reuse. `partial_file`, `protocol`: keep
  the outputs so far and continue from them (`posterior_log_z`)."""
  ec = config.eval
  train = dataset.eval_images('train', seed)
  images = train
  if 0 < ec.log_z_max_images < len(train):
    rows = np.sort(np.random.default_rng(seed).permutation(len(train))[:ec.log_z_max_images])
    images = train[rows]
  start = time.time()
  est = posterior_log_z(model, variables, images, key, mesh, len(train), ec.log_z_samples,
                        ec.log_z_chunk_size, batch_size, batch_fn, partial_file,
                        dict(protocol or {}, seed=seed, max_images=int(ec.log_z_max_images)),
                        remove_when_done)
  info = {'log_z': est['log_z'], 'log_z_stderr': est['log_z_stderr'],
          'log_z_num_samples': est['num_samples'], 'log_z_images': len(images),
          'log_z_seconds': time.time() - start}
  return set_log_z(variables, est['log_z']), info


# Markov's inequality for the unbiased prior-based Z^: P(Z^ >= Z / alpha) <= alpha, so with 95%
# confidence log Z >= log Z^ - log 20.
LOWER_BOUND_MARGIN_95 = math.log(20.0)


def check_against_prior(result: Dict[str, float], prior: Dict[str, float]) -> Dict[str, float]:
  """Compares the log Z that `result` (an evaluation with `log_z`, `nll`, `elbo`) used with the
  prior-based estimate `prior` (`prior_log_z`'s output):

  log_z_prior, log_z_prior_stderr, log_z_prior_num_samples   the prior-based estimate;
  nll_with_prior_log_z, elbo_with_prior_log_z   the same NLL and ELBO with the prior-based log Z
      (log Z enters log p(z) as a constant, so each shifts by exactly the difference of the two);
  log_z_deficit_95   max(0, log Z^_prior - log 20 - log_z): how far, with 95% confidence, the log Z
      used lies below the true log Z (Markov's inequality on the unbiased prior-based Z^), i.e. by
      how much at least the reported NLL is too low for that reason. 0 when the check finds nothing.
  """
  gap = prior['log_z'] - result['log_z']
  return {'log_z_prior': prior['log_z'], 'log_z_prior_stderr': prior['log_z_stderr'],
          'log_z_prior_num_samples': prior['num_samples'],
          'nll_with_prior_log_z': result['nll'] + gap,
          'elbo_with_prior_log_z': result['elbo'] - gap,
          'log_z_deficit_95': max(0.0, gap - LOWER_BOUND_MARGIN_95)}


def set_log_z(variables, log_z) -> dict:
  """`variables` with the pull-back prior's stored log Z replaced by `log_z`."""
  partition = dict(variables['partition'])
  old = partition['prior']['log_z']
  new = jnp.asarray(log_z, jnp.float32)
  if isinstance(old, jax.Array) and old.committed:
    new = jax.device_put(new, old.sharding)  # Where the stored value lives (e.g. replicated).
  partition['prior'] = dict(partition['prior'], log_z=new)
  return dict(variables, partition=partition)


def _posterior_critic(m, x, rng):
  """D(G(z)), z ~ q(z|x): [B]."""
  return m.prior.energy(m.sample_posterior(x, rng), m.prior_context())


# Prior draws of `diagnostics` unless fewer are asked for.
DIAGNOSTICS_PRIOR_SAMPLES = 10_000


def diagnostics(model, variables, rng: Array, images: np.ndarray,
                num_samples: int = DIAGNOSTICS_PRIOR_SAMPLES,
                batch: int = 1000) -> Dict[str, float]:
  """VAEPP's diagnostics (its Sec. 5.1 and Eq. 6), with the stored log Z:

  kl_base_to_prior  KL(p_base || p) = E_base[beta D(G(eps))] + log Z (the paper: 57.45 on MNIST);
  critic_prior      E_p[D(G(z))], self-normalised importance weights exp(-beta D) over eps ~ p_base;
  critic_posterior  E_q(z)[D(G(z))], z ~ q(z|x) over `images` (Eq. 6: at the optimum of beta the
                    two are equal);
  beta              W sigmoid(xi).
  """
  variables = variables_lib.as_variables(variables)
  prior_key, post_key = jax.random.split(rng)
  fn = compiled.jit(lambda v, k: model.apply(v, k, batch, method=_prior_terms))
  parts = [jax.device_get(fn(variables, jax.random.fold_in(prior_key, i)))
           for i in interrupts.checked(range(-(-num_samples // batch)))]
  d = np.concatenate([p[0] for p in parts]).astype(np.float64)[:num_samples]
  log_w = np.concatenate([p[1] for p in parts]).astype(np.float64)[:num_samples]
  w = np.exp(log_w - log_w.max())
  beta = float(model.apply(variables, method=lambda m: m.prior.beta()))
  log_z = float(variables['partition']['prior']['log_z'])
  post = compiled.jit(lambda v, x, k: model.apply(v, x, k, method=_posterior_critic))
  d_post = np.concatenate([np.asarray(post(variables, jnp.asarray(images[i:i + batch], jnp.float32),
                                           jax.random.fold_in(post_key, i)))
                           for i in interrupts.checked(range(0, len(images), batch))])
  return {'kl_base_to_prior': float(beta * d.mean() + log_z),
          'critic_prior': float(np.sum(w * d) / np.sum(w)),
          'critic_posterior': float(d_post.mean()), 'beta': beta}


def _beta_energy(m, z):
  """beta D(G(z)) [C] for z [C, d] (a model method): log p_base(z) - log f(z)."""
  return m.prior.beta() * m.prior.energy(z, m.prior_context())


def ais_log_z_bounds(model, variables, rng: Array, settings=None,
                     partial_file: Optional[str] = None, protocol: Optional[Dict] = None,
                     remove_when_done: bool = True) -> Dict:
  """Stochastic lower and upper bounds on the pull-back prior's log Z by annealed importance
  sampling in both directions (`ais.log_z_bounds`, whose result this returns, with the MALA
  chains' R-hat and ESS; kept in `partial_file` as it goes, for `protocol`). The prior's base must
  be the standard normal (VAEPP's)."""
  from vaeprior_jax.priors import base as priors_base  # pylint: disable=g-import-not-at-top
  from vaeprior_jax.priors.pullback import ais  # pylint: disable=g-import-not-at-top
  if not isinstance(model.prior.base, priors_base.StandardNormalPrior):
    raise ValueError('The AIS bounds on log Z anneal from N(0, I): they need '
                     f'model.pullback_base=standard, got a {type(model.prior.base).__name__}.')
  variables = variables_lib.as_variables(variables)
  energy = lambda z: model.apply(variables, z, method=_beta_energy)
  return ais.log_z_bounds(energy, model.prior.latent_dim, rng, settings,
                          partial_file=partial_file, protocol=protocol,
                          remove_when_done=remove_when_done)
