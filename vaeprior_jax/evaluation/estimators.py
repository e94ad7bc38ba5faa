"""Importance-weighted log-likelihood and the other metrics of Xu et al. (2019), App. B.3.

With K samples z_j ~ q(z|x) and log-weights l_j = log p(x|z_j) + log p(z_j) - log q(z_j|x),

    log p(x) ~= LogMeanExp_j l_j = logsumexp_j(l_j) - log K,

a lower bound whose expectation increases with K to log p(x) (Burda et al., 2016); with K = 1 it is the
ELBO. Samples are drawn in chunks: a chunk of `chunk_size` keys is vmapped over the model's log-weight
function and folded into running (max, sum of exp) accumulators by `lax.scan`, so memory is set by
chunk_size x batch, not by K. Everything is reduced in float32.
"""

import json
import math
import os
from typing import Callable, Dict, Iterator, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from vaeprior_jax import interrupts
from vaeprior_jax import compiled
from vaeprior_jax import config as config_lib
from vaeprior_jax import files
from vaeprior_jax import variables as variables_lib

Array = jax.Array
TermsFn = Callable[[Array, Array], Dict[str, Array]]


def _chunked_sample_reduce(terms_fn: TermsFn, x: Array, rng: Array, num_samples: int,
                           chunk_size: int,
                           log_mean_exp_of: Sequence[str] = ('log_weight',)) -> Dict[str, Array]:
  """Draws `num_samples` samples of `terms_fn(x, key)` (a dict of [B] arrays).

  Returns, for each term t, {t: mean of t, [B]}, and for each t in `log_mean_exp_of`,
  {'log_mean_exp' (t = 'log_weight') or 'log_mean_exp_' + t: LogMeanExp of t, [B]}, computed with
  running (max, sum of exp) accumulators. The keys are `jax.random.split(rng, num_samples)`
  whatever the chunk size.
  """
  if num_samples < 1 or chunk_size < 1:
    raise ValueError(f'num_samples and chunk_size must be >= 1, got {num_samples}, {chunk_size}.')
  chunk_size = min(chunk_size, num_samples)
  num_chunks = -(-num_samples // chunk_size)
  padded = num_chunks * chunk_size
  keys = jax.random.split(rng, num_samples)
  if padded > num_samples:  # Pad with repeated keys; their samples are masked out below.
    keys = jnp.concatenate([keys, keys[:padded - num_samples]])
  keys = keys.reshape((num_chunks, chunk_size) + keys.shape[1:])
  valid = (jnp.arange(padded) < num_samples).reshape(num_chunks, chunk_size)

  probe = jax.eval_shape(terms_fn, x, keys[0, 0])
  missing = [t for t in log_mean_exp_of if t not in probe]
  if missing:
    raise ValueError(f'terms_fn must return a dict with {missing} entries, got {sorted(probe)}.')
  init = {
      'max': {t: jnp.full(probe[t].shape, -jnp.inf, jnp.float32) for t in log_mean_exp_of},
      'sum_exp': {t: jnp.zeros(probe[t].shape, jnp.float32) for t in log_mean_exp_of},
      'sums': {k: jnp.zeros(v.shape, jnp.float32) for k, v in probe.items()},
  }

  def body(acc, chunk):
    chunk_keys, chunk_valid = chunk
    terms = jax.vmap(terms_fn, in_axes=(None, 0))(x, chunk_keys)
    terms = {k: v.astype(jnp.float32) for k, v in terms.items()}
    new = {'max': {}, 'sum_exp': {}}
    for t in log_mean_exp_of:
      mask = chunk_valid.reshape((-1,) + (1,) * (terms[t].ndim - 1))
      log_w = jnp.where(mask, terms[t], -jnp.inf)
      new_max = jnp.maximum(acc['max'][t], jnp.max(log_w, axis=0))
      new['sum_exp'][t] = (acc['sum_exp'][t] * jnp.exp(acc['max'][t] - new_max)
                           + jnp.sum(jnp.exp(log_w - new_max), axis=0))
      new['max'][t] = new_max
    sums = {}
    for k, v in terms.items():
      mask = chunk_valid.reshape((-1,) + (1,) * (v.ndim - 1))
      sums[k] = acc['sums'][k] + jnp.sum(jnp.where(mask, v, 0.0), axis=0)
    return dict(new, sums=sums), None

  acc, _ = jax.lax.scan(body, init, (keys, valid))
  out = {k: v / num_samples for k, v in acc['sums'].items()}
  for t in log_mean_exp_of:
    name = 'log_mean_exp' if t == 'log_weight' else 'log_mean_exp_' + t
    out[name] = acc['max'][t] + jnp.log(acc['sum_exp'][t]) - math.log(num_samples)
  return out


def importance_weighted_log_likelihood(log_weight_fn: Callable[[Array, Array], Array], x: Array,
                                       rng: Array, num_samples: int = 1000,
                                       chunk_size: int = 100) -> Array:
  """K-sample importance-weighted estimate of log p(x), one per example: [B].

  Args:
    log_weight_fn: (x, key) -> [B] log-weights log p(x|z) + log p(z) - log q(z|x), one z ~ q(z|x) each.
    x: a batch of examples, [B, ...].
    rng: a key; sample j uses `jax.random.split(rng, num_samples)[j]`.
    num_samples: K.
    chunk_size: samples evaluated at once; peak memory is proportional to chunk_size x B.
  """
  terms_fn = lambda x_, key: {'log_weight': log_weight_fn(x_, key)}
  return _chunked_sample_reduce(terms_fn, x, rng, num_samples, chunk_size)['log_mean_exp']


def log_likelihood_fn(model, num_samples: int = 1000, chunk_size: int = 100):
  """The compiled K-sample estimator of a model: (params, x [B, ...], key) -> log p(x) [B].

  Build it once per model and call it as often as you like: it compiles once per batch shape, where
  `importance_weighted_log_likelihood` called with a fresh function each time traces and compiles
  anew on every call. Sample j uses `jax.random.split(key, num_samples)[j]`, as there.
  """

  @compiled.jit
  def log_likelihood(params, x, key):
    log_w = lambda x_, k: model.apply(variables_lib.as_variables(params), x_, k, method=model.log_importance_weight)
    return importance_weighted_log_likelihood(log_w, x, key, num_samples, chunk_size)

  return log_likelihood


def importance_weighted_metrics(terms_fn: TermsFn, x: Array, rng: Array, num_samples: int = 1000,
                                chunk_size: int = 100) -> Dict[str, Array]:
  """The App. B.3 metrics of a batch, per example ([B] each), from one set of K samples.

  Args:
    terms_fn: (x, key) -> {'log_px_z', 'log_pz', 'log_qz'}, each [B], one z ~ q(z|x) each (for a VAE:
      `VAE.log_weight_terms`).
  Returns:
    log_likelihood: LogMeanExp of the log-weights (the NLL is its negative);
    elbo: mean log-weight; reconstruction: mean log p(x|z); kl: mean (log q(z|x) - log p(z));
    kl_z_given_x: log_likelihood - elbo, the estimate of KL(q(z|x) || p(z|x)).
  """
  def with_weight(x_, key):
    t = terms_fn(x_, key)
    return {'log_weight': t['log_px_z'] + t['log_pz'] - t['log_qz'],
            'log_px_z': t['log_px_z'], 'kl': t['log_qz'] - t['log_pz']}

  r = _chunked_sample_reduce(with_weight, x, rng, num_samples, chunk_size)
  return {
      'log_likelihood': r['log_mean_exp'],
      'elbo': r['log_weight'],
      'reconstruction': r['log_px_z'],
      'kl': r['kl'],
      'kl_z_given_x': r['log_mean_exp'] - r['log_weight'],
  }


def active_units(posterior_means: np.ndarray, threshold: float = 0.01) -> int:
  """Number of latent dimensions k with Var_x[E_q[z_k|x]] > threshold (Burda et al., 2016).

  Args:
    posterior_means: [N, latent_dim], E_q[z|x] for each of N examples (App. B.3: the training set).
  """
  posterior_means = np.asarray(posterior_means, np.float64)
  if posterior_means.ndim != 2:
    raise ValueError(f'posterior_means must be [N, latent_dim], got {posterior_means.shape}.')
  return int(np.sum(np.var(posterior_means, axis=0) > threshold))


# ------------------------------------------------------------------------ memory bounded by the budget

def _inner_jaxprs(value):
  """The jaxprs inside an equation's parameter (a scan's body, a cond's branches, a pjit's call)."""
  if hasattr(value, 'jaxpr') and hasattr(value, 'consts'):  # ClosedJaxpr
    yield value.jaxpr
  elif hasattr(value, 'eqns') and hasattr(value, 'outvars'):  # Jaxpr
    yield value
  elif isinstance(value, (tuple, list)):
    for v in value:
      yield from _inner_jaxprs(v)


def _nbytes(var) -> int:
  aval = getattr(var, 'aval', None)
  if aval is None or not hasattr(aval, 'shape') or not hasattr(aval, 'dtype'):
    return 0
  if jax.dtypes.issubdtype(aval.dtype, jax.dtypes.prng_key):
    return int(math.prod(aval.shape)) * 8  # A typed key: two uint32 words.
  return int(math.prod(aval.shape)) * np.dtype(aval.dtype).itemsize


def peak_bytes(jaxpr) -> int:
  """The most bytes alive at once when `jaxpr` runs one operation at a time: each output allocated
  when computed and freed after its last use, inputs held throughout, a nested jaxpr (a scan's body,
  a branch) at its own peak while it runs. XLA fuses and reuses buffers, so it needs no more than
  this, up to its own workspace."""
  last_use = {}
  for i, eqn in enumerate(jaxpr.eqns):
    for v in eqn.invars:
      if not hasattr(v, 'val'):  # A Var, not a Literal.
        last_use[v] = i
  for v in jaxpr.outvars:
    if not hasattr(v, 'val'):
      last_use[v] = len(jaxpr.eqns)
  live = sum(_nbytes(v) for v in list(jaxpr.invars) + list(jaxpr.constvars))
  peak = live
  for i, eqn in enumerate(jaxpr.eqns):
    inner = max((peak_bytes(j) for p in eqn.params.values() for j in _inner_jaxprs(p)), default=0)
    out = sum(_nbytes(v) for v in eqn.outvars)
    peak = max(peak, live + max(out, inner))
    live += out
    for v in set(v for v in eqn.invars if not hasattr(v, 'val')):
      if last_use.get(v) == i:
        live -= _nbytes(v)
    for v in eqn.outvars:
      if v not in last_use:  # Never read.
        live -= _nbytes(v)
  return peak


def device_memory_bytes(device=None) -> int:
  """The memory of one device: an accelerator's limit as it reports it, the host's RAM for a CPU."""
  device = device or jax.devices()[0]
  stats = device.memory_stats() if hasattr(device, 'memory_stats') else None
  if stats and stats.get('bytes_limit'):
    return int(stats['bytes_limit'])
  import os  # pylint: disable=g-import-not-at-top
  return int(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES'))


# The share of a device's memory the estimator may use when eval.memory_budget_gb is 0 (the data,
# the parameters and the input pipeline need the rest).
DEFAULT_MEMORY_SHARE = 0.75
# How many times `peak_bytes` XLA may hold: the factor measured for the largest estimator
# (PixelVAE's, benchmarks/LOG.md), with a margin.
XLA_OVERHEAD = 2.5


def bounded_chunk_size(batch_fn_of_chunk, chunk_size: int, params, x_shape, key, num_devices: int,
                       budget_gb: float = 0.0) -> int:
  """The largest chunk <= `chunk_size` whose call of `batch_fn_of_chunk(chunk)` on (params, x of
  `x_shape` (float32, the global batch), key) needs at most the memory budget per device: its
  jaxpr's `peak_bytes` times `XLA_OVERHEAD`, the batch split over `num_devices` (found by tracing,
  without compiling). budget_gb: the budget (0: `DEFAULT_MEMORY_SHARE` of one device's memory).
  What this returns is what the estimator runs with, whatever the config asks, so a chunk size
  copied from another net's entry cannot exhaust the memory."""
  budget = budget_gb * 2**30 if budget_gb > 0 else DEFAULT_MEMORY_SHARE * device_memory_bytes()
  x = jax.ShapeDtypeStruct(tuple(x_shape), jnp.float32)

  def need(chunk):
    jaxpr = jax.make_jaxpr(batch_fn_of_chunk(chunk))(params, x, key).jaxpr
    return XLA_OVERHEAD * peak_bytes(jaxpr) / num_devices

  chunk = chunk_size
  while chunk > 1:
    used = need(chunk)
    if used <= budget:
      break
    chunk = max(1, min(chunk - 1, int(chunk * budget / used)))
  return chunk


# What q(z|.) reads in an evaluation (`eval.proposal_input`): the target image, or the grey image a
# binarized target was drawn from (VAEPP's code, for runs trained on grey levels).
PROPOSAL_INPUTS = ('target', 'grey')


def check_eval_config(eval_config) -> None:
  """One-line errors for the library's `config.eval` settings (components check their own)."""
  for key, least in (('num_samples', 1), ('chunk_size', 1), ('batch_size', 1),
                     ('active_units_samples', 1), ('active_units_batch_size', 0)):
    config_lib.check_integer(eval_config[key], f'eval.{key}', least,
                             ' (0: eval.batch_size)' if key == 'active_units_batch_size' else '')
  if not eval_config.memory_budget_gb >= 0:
    raise ValueError(f'eval.memory_budget_gb must be >= 0 (0: 3/4 of a device), got '
                     f'{eval_config.memory_budget_gb!r}.')
  if eval_config.proposal_input not in PROPOSAL_INPUTS:
    raise ValueError(f'Unknown eval.proposal_input {eval_config.proposal_input!r}; allowed: '
                     f'{", ".join(PROPOSAL_INPUTS)}.')


# ------------------------------------------------------------------------------- over a whole split

def make_batch_metrics(model, num_samples: int, chunk_size: int, paired: bool = False):
  """Jitted (params, x [B, ...], key) -> `importance_weighted_metrics` of a VAE, per example.

  paired: x is Concat[target, encoder input] on the last axis (`data.grey_proposal_pairs`): the
  proposal is q(z|e) of the grey image e, the likelihood scores the binarized target. (Bound the
  chunk by the memory first: `bounded_batch_metrics`.)
  """

  def terms(variables, x_, k):
    if not paired:
      return model.apply(variables, x_, k, method=model.log_weight_terms)
    half = x_.shape[-1] // 2
    return model.apply(variables, x_[..., :half], k, encoder_input=x_[..., half:],
                       method=model.log_weight_terms)

  @compiled.jit
  def batch_metrics(params, x, key):
    terms_fn = lambda x_, k: terms(variables_lib.as_variables(params), x_, k)
    return importance_weighted_metrics(terms_fn, x, key, num_samples, chunk_size)

  return batch_metrics


def bounded_batch_metrics(model, num_samples: int, chunk_size: int, params, x_shape, key, mesh,
                          budget_gb: float = 0.0, paired: bool = False, log_label: str = ''):
  """`make_batch_metrics` with the chunk bounded by the memory budget (`bounded_chunk_size`) for
  batches of `x_shape`; a smaller chunk than asked is logged (the estimate is the same up to
  float32 rounding: sample j still uses the j-th key)."""
  fitted = bounded_chunk_size(
      lambda c: (lambda p, x, k: make_batch_metrics(model, num_samples, c, paired)(p, x, k)),
      min(chunk_size, num_samples), params, x_shape, key, mesh.devices.size, budget_gb)
  if fitted < min(chunk_size, num_samples):
    from absl import logging  # pylint: disable=g-import-not-at-top
    logging.info('%s: %d samples per chunk instead of %d, to stay within the memory budget '
                 '(eval.memory_budget_gb).', log_label or 'The estimator', fitted, chunk_size)
  fn = make_batch_metrics(model, num_samples, fitted, paired)

  def batch_metrics(params, x, key):
    return fn(params, x, key)

  batch_metrics.chunk_size = fitted  # What the numbers depend on (their float32 rounding).
  return batch_metrics


def split_batches(batch_fn, params, images: np.ndarray, key: Array, mesh, batch_size: int,
                  max_examples=None, seed: int = 0, start: int = 0):
  """(number of examples, an iterator over the batches of a split, or of a seeded random subset of
  `max_examples`): batch i gives batch_fn(params, x_i sharded over `mesh`, fold_in(key, i)),
  fetched to the host, each output restricted to the batch's real examples ({name: [n_i]}).
  `start`: the batches before it are skipped (not computed; a resumed pass)."""
  from vaeprior_jax import data  # pylint: disable=g-import-not-at-top
  from vaeprior_jax import sharding  # pylint: disable=g-import-not-at-top
  indices, batches = data.eval_batches(images, batch_size, max_examples, seed,
                                       sharding.process_slice(batch_size))

  def outputs():
    for i, (x, mask) in enumerate(batches):
      if i < start:
        continue
      interrupts.check()
      out = sharding.to_host(batch_fn(params, sharding.shard_batch(x, mesh),
                                      jax.random.fold_in(key, i)))
      yield {k: np.asarray(v)[mask] for k, v in out.items()}

  return len(indices), outputs()


def split_outputs(batch_fn, params, images: np.ndarray, key: Array, mesh, batch_size: int,
                  max_examples=None, seed: int = 0, partial_file: Optional[str] = None,
                  protocol: Optional[Dict] = None, save_every_seconds: float = 30.0,
                  remove_when_done: bool = True) -> Dict[str, np.ndarray]:
  """{name: the per-example outputs of `split_batches`, concatenated over the split}, kept in
  `partial_file` as the pass goes (`kept_concatenation`)."""
  return kept_concatenation(
      lambda start: split_batches(batch_fn, params, images, key, mesh, batch_size, max_examples,
                                  seed, start=start)[1],
      partial_file, protocol, save_every_seconds, remove_when_done)


def kept_concatenation(parts_from: Callable[[int], Iterator[Dict[str, np.ndarray]]],
                       partial_file: Optional[str] = None, protocol: Optional[Dict] = None,
                       save_every_seconds: float = 30.0,
                       remove_when_done: bool = True) -> Dict[str, np.ndarray]:
  """{name: the arrays `parts_from(0)` yields, concatenated}, resumable.

  parts_from(start): the parts from the start-th on ({name: array} each; the same parts whenever it
  is called). partial_file: where the parts so far are kept (.npz, written atomically every
  `save_every_seconds` and when a signal stops the pass), with `protocol` (what the parts depend
  on); a pass started again with the same protocol continues after the last part kept, another
  starts over (one log line says why). The file is removed when the pass completes, or, with
  `remove_when_done=False`, holds the whole pass (a later step of the same job may be stopped: its
  rerun then reads this pass back at once; the job removes the file when it is done)."""
  import time  # pylint: disable=g-import-not-at-top
  from absl import logging  # pylint: disable=g-import-not-at-top
  protocol_json = json.dumps(protocol or {}, sort_keys=True, default=float)
  parts, done = {}, 0
  kept = files.read_kept_npz(partial_file, protocol_json, 'partial outputs') if partial_file else None
  if kept is not None and '__batches__' not in kept:
    logging.warning('Ignoring the unreadable partial outputs in %s (no part count).', partial_file)
  elif kept is not None:
    done = int(kept.pop('__batches__'))
    parts = {k: [v] for k, v in kept.items()}
    logging.info('Continuing after part %d from %s.', done, partial_file)
  batches = parts_from(done)
  saved_at = time.time()

  def keep():
    if partial_file and jax.process_index() == 0:
      files.write_kept_npz(partial_file, protocol_json, __batches__=np.array(done),
                           **{k: np.concatenate(v) for k, v in parts.items()})

  try:
    for out in batches:
      for k, v in out.items():
        parts.setdefault(k, []).append(np.asarray(v))
      done += 1
      if partial_file and time.time() - saved_at >= save_every_seconds:
        keep()
        saved_at = time.time()
  except interrupts.Interrupted:
    keep()
    raise
  _finish(partial_file, remove_when_done, keep)
  return {k: np.concatenate(v) for k, v in parts.items()}


def _finish(partial_file: Optional[str], remove: bool, keep: Callable[[], None]) -> None:
  """At the end of a kept pass: its file removed, or (remove=False) written whole."""
  if not partial_file or jax.process_index() != 0:
    return
  if not remove:
    keep()
  elif os.path.exists(partial_file):
    os.remove(partial_file)


def split_metrics(batch_metrics, params, images: np.ndarray, key: Array, mesh, batch_size: int,
                  max_examples=None, seed: int = 0, label: str = '',
                  partial_file: Optional[str] = None, protocol: Optional[Dict] = None,
                  save_every_seconds: float = 30.0,
                  remove_when_done: bool = True) -> Dict[str, float]:
  """Averages `batch_metrics` over a split (or a seeded random subset of `max_examples`).

  Batches are sharded over `mesh`; batch i uses fold_in(key, i). Returns nll = -mean log p(x), elbo,
  reconstruction, kl, kl_z_given_x (nats per example), num_examples and seconds (the pass's wall
  time, summed over the processes that worked on it). With `label`, logs progress.

  partial_file: where the running sums are kept (JSON, written atomically every
  `save_every_seconds` and when a signal stops the pass, `interrupts`), with `protocol` (a dict of
  everything the numbers depend on: samples, examples, seed, batch size, chunk, checkpoint, ...).
  A pass started again with the same protocol continues after the last batch kept and ends with the
  same sums, bit for bit (float64, kept exactly); another protocol starts over, saying why in one
  line. The file is removed when the pass completes (with `remove_when_done=False`, it then holds
  the whole pass: see `kept_concatenation`).
  """
  import time  # pylint: disable=g-import-not-at-top
  from absl import logging  # pylint: disable=g-import-not-at-top
  from vaeprior_jax.train import metric_writer  # pylint: disable=g-import-not-at-top
  protocol = json.loads(json.dumps(protocol or {}, default=float))  # As it reads back.
  sums, count, done, earlier = {}, 0, 0, 0.0
  if partial_file:
    kept = files.read_kept_json(partial_file, _valid_partial, 'partial sums')
    if kept is not None and kept.get('protocol') == protocol:
      sums, count, done = kept['sums'], kept['count'], kept['batches']
      earlier = float(kept.get('seconds', 0.0))
      logging.info('%s: continuing after batch %d (%d examples) from %s.', label or 'Evaluation',
                   done, count, partial_file)
    elif kept is not None:
      changed = sorted(k for k in set(protocol) | set(kept.get('protocol', {}))
                       if protocol.get(k) != kept.get('protocol', {}).get(k))
      logging.info('%s: starting over: the partial sums in %s are for another %s.',
                   label or 'Evaluation', partial_file, ', '.join(changed) or 'protocol')
  total, batches = split_batches(batch_metrics, params, images, key, mesh, batch_size,
                                 max_examples, seed, start=done)
  start = saved_at = time.time()
  resumed_count = count

  def keep():
    if partial_file and jax.process_index() == 0:
      files.write_json_atomically(
          partial_file, {'protocol': protocol, 'batches': done, 'count': count, 'sums': sums,
                         'seconds': earlier + time.time() - start})

  try:
    for m in batches:
      for k, v in m.items():
        sums[k] = sums.get(k, 0.0) + float(np.sum(np.asarray(v, np.float64)))
      count += len(m['log_likelihood'])
      done += 1
      if label and ((done - 1) % 10 == 0 or count == total):
        elapsed, counted = time.time() - start, count - resumed_count
        eta = elapsed / max(counted, 1) * (total - count)
        logging.info('%s: %d/%d examples, %.1f examples/s, ETA %s', label, count, total,
                     counted / max(elapsed, 1e-9), metric_writer.format_duration(eta))
      if partial_file and time.time() - saved_at >= save_every_seconds:
        keep()
        saved_at = time.time()
  except interrupts.Interrupted:
    keep()  # Everything up to the last whole batch.
    raise
  _finish(partial_file, remove_when_done, keep)
  means = {k: v / count for k, v in sums.items()}
  return {'nll': -means['log_likelihood'], 'elbo': means['elbo'],
          'reconstruction': means['reconstruction'], 'kl': means['kl'],
          'kl_z_given_x': means['kl_z_given_x'], 'num_examples': count,
          'seconds': earlier + time.time() - start}


def _valid_partial(record) -> bool:
  """Whether a partial-sums file holds {'batches', 'count', 'sums': {name: float}}."""
  return (isinstance(record, dict) and isinstance(record.get('batches'), int)
          and isinstance(record.get('count'), int) and isinstance(record.get('sums'), dict)
          and record['batches'] >= 0 and record['count'] >= 0
          and isinstance(record.get('seconds', 0.0), (int, float))
          and all(isinstance(v, float) for v in record['sums'].values()))


