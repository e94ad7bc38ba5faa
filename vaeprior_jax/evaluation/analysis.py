"""The analyses behind Xu et al.'s figures and tables (App. B.3-B.4, Figs. 1-3, Tables 7-8).

All functions take a VAE, its parameters and images (float32 [N, H, W, C] in [0, 1]), work in
batches sharded over a mesh, and return NumPy arrays:

  posterior_moments     E_q[z|x] and the per-dimension std of q(z|x) (Fig. 3, left)
  closest_pairs         for each x_i, the x_j whose posterior mean is nearest (App. B.4)
  std_along             Std[i; j] = sqrt(Var_{q(z|x_i)}[(z - mu_i) . d_ij / |d_ij|])     (Eq. B.3)
  normalized_distances  2 |d_ij| / (Std[i; j] + Std[j; i])                               (Eq. B.2)
  interpolations        decoded z on the segment between two posterior means, with log p(z) (Fig. 2)
  nearest_images        the training image nearest (pixel L2) to each sample (Fig. 1)

Moments of a Gaussian posterior are exact; those of a RealNVP posterior are Monte Carlo estimates
with `num_samples` samples (the paper: 1,000).
"""

from typing import Dict, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from vaeprior_jax import compiled
from vaeprior_jax import data
from vaeprior_jax import models
from vaeprior_jax import posteriors
from vaeprior_jax import sharding

Array = jax.Array


def _is_gaussian(model) -> bool:
  return isinstance(model.posterior, posteriors.GaussianPosterior)


def _map_batches(fn, params, arrays, key, mesh, batch_size: int) -> np.ndarray:
  """Applies jitted fn(params, x_batch, *other_batches, key_i) over aligned arrays; concatenates
  the results. The parameters are an argument, not constants captured by the compiled function:
  captured, XLA would fold them into the program (slow compiles, one per set of parameters)."""
  n = arrays[0].shape[0]
  rows = sharding.process_slice(batch_size)
  outs = []
  for i, start in enumerate(range(0, n, batch_size)):
    idx = np.arange(start, min(start + batch_size, n))
    pad = np.pad(idx, (0, batch_size - len(idx)), mode='edge')[rows]
    batch = [sharding.shard_batch(data.to_float(a[pad]) if a.ndim == 4 else a[pad], mesh)
             for a in arrays]
    outs.append(sharding.to_host(fn(params, *batch, jax.random.fold_in(key, i)))[:len(idx)])
  return np.concatenate(outs)


def _encode(model, params, x: Array) -> Tuple[Array, Array]:
  """The encoder's (mean, log_std) of x: q(z|x) itself for a Gaussian posterior."""
  return model.apply(models.as_variables(params), x, method=lambda m, x_: m.encoder(x_))


def _posterior_samples(model, params, x: Array, key: Array, num_samples: int) -> Array:
  """num_samples draws of z ~ q(z|x): [num_samples, B, latent_dim]."""
  return jax.vmap(lambda k: model.apply(models.as_variables(params), x, k,
                                        method=models.VAE.sample_posterior))(
                                            jax.random.split(key, num_samples))


def posterior_moments(model, params, images: np.ndarray, key: Array, mesh, batch_size: int = 128,
                      num_samples: int = 1000) -> Tuple[np.ndarray, np.ndarray]:
  """(E_q[z|x], per-dimension std of q(z|x)), each [N, latent_dim]."""
  if _is_gaussian(model):
    @compiled.jit
    def fn(p, x, k):
      del k
      mean, log_std = _encode(model, p, x)
      return jnp.stack([mean, jnp.exp(log_std)], axis=1)
  else:
    @compiled.jit
    def fn(p, x, k):
      z = _posterior_samples(model, p, x, k, num_samples)
      return jnp.stack([jnp.mean(z, 0), jnp.std(z, 0)], axis=1)
  moments = _map_batches(fn, params, [images], key, mesh, batch_size)
  return moments[:, 0], moments[:, 1]


def closest_pairs(means: np.ndarray, block_size: int = 1024) -> Tuple[np.ndarray, np.ndarray]:
  """For each row i of means [N, d]: j = argmin_{j != i} |mu_j - mu_i| and that distance."""
  means = np.asarray(means, np.float32)
  n = means.shape[0]
  if n < 2:
    raise ValueError(f'closest_pairs needs at least 2 points, got {n}.')
  all_means = jnp.asarray(means)
  sq_norms = jnp.sum(all_means ** 2, axis=1)

  @compiled.jit
  def block(rows, row_ids):
    d2 = jnp.sum(rows ** 2, 1)[:, None] + sq_norms[None, :] - 2.0 * rows @ all_means.T
    d2 = jnp.where(row_ids[:, None] == jnp.arange(n)[None, :], jnp.inf, d2)
    return jnp.argmin(d2, axis=1)

  nearest = []
  for start in range(0, n, block_size):
    ids = np.arange(start, min(start + block_size, n))
    pad = np.pad(ids, (0, block_size - len(ids)), mode='edge')
    nearest.append(np.asarray(block(means[pad], pad))[:len(ids)])
  nearest = np.concatenate(nearest)
  # Distances recomputed exactly from the pairs (the expansion above loses digits to cancellation).
  dist = np.linalg.norm(means[nearest].astype(np.float64) - means.astype(np.float64), axis=1)
  return nearest, dist


def std_along(model, params, images: np.ndarray, directions: np.ndarray, key: Array, mesh,
              batch_size: int = 128, num_samples: int = 1000) -> np.ndarray:
  """Std of q(z|x_i) along the unit vector of directions[i] (Eq. B.3), [N]."""
  unit = directions / np.maximum(np.linalg.norm(directions, axis=1, keepdims=True), 1e-12)
  unit = unit.astype(np.float32)
  if _is_gaussian(model):
    @compiled.jit
    def fn(p, x, u, k):
      del k
      _, log_std = _encode(model, p, x)
      return jnp.sqrt(jnp.sum(jnp.exp(2 * log_std) * u ** 2, axis=-1))
  else:
    @compiled.jit
    def fn(p, x, u, k):
      z = _posterior_samples(model, p, x, k, num_samples)
      return jnp.std(jnp.sum(z * u, axis=-1), axis=0)
  return _map_batches(fn, params, [images, unit], key, mesh, batch_size)


def normalized_distances(dist: np.ndarray, std_ij: np.ndarray, std_ji: np.ndarray) -> np.ndarray:
  """Eq. B.2: 2 d_ij / (Std[i; j] + Std[j; i]); 0 for coinciding means (e.g. duplicate images)."""
  dist = np.asarray(dist, np.float64)
  denominator = np.asarray(std_ij, np.float64) + np.asarray(std_ji, np.float64)
  return np.where(dist > 0, 2.0 * dist / np.where(dist > 0, denominator, 1.0), 0.0)


def closest_pair_analysis(model, params, images: np.ndarray, key: Array, mesh,
                          batch_size: int = 128, num_samples: int = 1000) -> Dict[str, np.ndarray]:
  """App. B.4 on `images`: per-dimension posterior stds, closest-pair distances, normalized ones."""
  moments_key, ij_key, ji_key = jax.random.split(key, 3)
  means, stds = posterior_moments(model, params, images, moments_key, mesh, batch_size,
                                  num_samples)
  nearest, dist = closest_pairs(means)
  d = means[nearest] - means
  std_ij = std_along(model, params, images, d, ij_key, mesh, batch_size, num_samples)
  std_ji = std_along(model, params, images[nearest], d, ji_key, mesh, batch_size, num_samples)
  return {'means': means, 'stds': stds, 'nearest': nearest, 'distances': dist,
          'normalized_distances': normalized_distances(dist, std_ij, std_ji)}


def interpolations(model, params, x_a: np.ndarray, x_b: np.ndarray, num_steps: int, key: Array,
                   num_samples: int = 1000) -> Tuple[np.ndarray, np.ndarray]:
  """Fig. 2: z_t = (1 - t) mu(x_a) + t mu(x_b), t = 0 .. 1 in num_steps steps, per pair.

  Returns (images [P, num_steps + 2, H, W, C]: x_a, decoded z_t..., x_b; log p(z_t) [P, num_steps]).
  Autoregressive decoders draw their images pixel by pixel (models.sample_images' protocol).
  """
  x_a, x_b = data.to_float(x_a), data.to_float(x_b)
  mean_key, decode_key = jax.random.split(key)
  mu = lambda x: model.apply(models.as_variables(params), jnp.asarray(x), mean_key, num_samples,
                             method=models.VAE.posterior_mean)
  mu_a, mu_b = mu(x_a), mu(x_b)
  t = jnp.linspace(0.0, 1.0, num_steps)[None, :, None]
  z = (1 - t) * mu_a[:, None] + t * mu_b[:, None]  # [P, steps, d]
  flat = z.reshape((-1, z.shape[-1]))
  log_pz = model.apply(models.as_variables(params), flat, method=lambda m, z_: m.prior.log_prob(z_))
  decoded = models.decode_images(model, params, flat, decode_key, x_a.shape[1:])
  decoded = np.asarray(decoded).reshape(z.shape[:2] + x_a.shape[1:])
  rows = np.concatenate([x_a[:, None], decoded, x_b[:, None]], axis=1)
  return rows, np.asarray(log_pz).reshape(z.shape[:2])


def nearest_images(samples: np.ndarray, train_images: np.ndarray,
                   block_size: int = 4096) -> np.ndarray:
  """Index of the training image nearest to each sample in pixel-wise L2 distance (Fig. 1), [S]."""
  s = jnp.asarray(samples.reshape(samples.shape[0], -1), jnp.float32)
  best_d, best_i = np.full(len(samples), np.inf), np.zeros(len(samples), np.int64)
  dist = compiled.jit(
      lambda t: jnp.sum(s ** 2, 1)[:, None] + jnp.sum(t ** 2, 1)[None] - 2 * s @ t.T)
  for start in range(0, train_images.shape[0], block_size):
    block = data.to_float(train_images[start:start + block_size])
    d = np.asarray(dist(jnp.asarray(block.reshape(block.shape[0], -1))))
    i = np.argmin(d, axis=1)
    better = d[np.arange(len(i)), i] < best_d
    best_d[better], best_i[better] = d[np.arange(len(i)), i][better], start + i[better]
  return best_i


def histogram(values: np.ndarray, bins: int = 50, log_space: bool = False) -> Dict[str, list]:
  """{'counts', 'edges'} of finite values (log-spaced bins with log_space), for JSON."""
  values = np.asarray(values, np.float64).reshape(-1)
  values = values[np.isfinite(values)]
  if log_space:
    positive = values[values > 0]
    edges = np.geomspace(positive.min(), positive.max(), bins + 1) if positive.size else bins
  else:
    edges = bins
  counts, edges = np.histogram(values, edges)
  return {'counts': counts.tolist(), 'edges': edges.tolist()}


def summary(values: np.ndarray) -> Dict[str, float]:
  values = np.asarray(values, np.float64).reshape(-1)
  return {'mean': float(values.mean()), 'median': float(np.median(values)),
          'min': float(values.min()), 'max': float(values.max())}


# ------------------------------------------------------------------------------ a whole workdir

def _restored_run(workdir: str, config, checkpoint: str):
  """(dataset, model, variables, step, mesh, eval batch size) of a run's checkpoint, for the
  analyses."""
  from vaeprior_jax import checkpoints  # pylint: disable=g-import-not-at-top
  dataset = data.load(config.data)
  model = models.create(config.model, dataset.input_shape)
  variables, step = checkpoints.restore_variables(workdir, config, model, dataset.input_shape,
                                                  checkpoint)
  mesh = sharding.make_mesh()
  return (dataset, model, variables, step, mesh,
          sharding.round_up_to_devices(config.eval.batch_size, mesh))


def analyze_workdir(workdir: str, split: str = 'test', num_samples: int = 1000,
                    max_examples: int = 0, num_pairs: int = 6, num_steps: int = 8, seed: int = 0,
                    checkpoint: str = 'auto', reuse_eval: bool = True) -> Dict:
  """Runs every analysis on a training workdir; writes workdir/analysis/{analysis.json, *.png}.

  - metrics (Tables 7, 8, B.11-B.14): nll, elbo, reconstruction, kl, kl_z_given_x on `split` and the
    active units, from `evaluate` (reusing eval_{split}.json when it has the same settings);
  - App. B.4 / Fig. 3 on the training split (a seeded random subset of `max_examples` if > 0):
    histograms of per-dimension posterior stds, closest-pair distances and normalized distances;
  - Fig. 2: `num_pairs` interpolations between random training points' posterior means with
    log p(z) along each; Fig. 1: 6x6 samples whose last column is the training image nearest to the
    one beside it.
  """
  import json  # pylint: disable=g-import-not-at-top
  import os  # pylint: disable=g-import-not-at-top
  from absl import logging  # pylint: disable=g-import-not-at-top
  from vaeprior_jax.evaluation import report  # pylint: disable=g-import-not-at-top
  from vaeprior_jax import checkpoints  # pylint: disable=g-import-not-at-top

  config = checkpoints.load_config(workdir)
  if models.is_hierarchical(config.model):
    raise ValueError(f'The analyses of Xu et al. (App. B.4) are defined for one-level VAEs; {workdir} '
                     f'holds model.net={config.model.net}, a two-level model. Use '
                     'experiments.evaluate for its metrics and per-level active units.')
  out_dir = os.path.join(workdir, 'analysis')
  os.makedirs(out_dir, exist_ok=True)
  eval_path = report.result_path(workdir, split, max_examples if max_examples > 0 else None, seed)
  metrics = None
  if reuse_eval and os.path.exists(eval_path):
    with open(eval_path) as f:
      metrics = json.load(f)
    wanted = max_examples if max_examples > 0 else None
    if (metrics.get('num_samples') != num_samples or 'active_units' not in metrics or
        (wanted and metrics.get('num_examples') != wanted)):
      metrics = None
  if metrics is None:
    logging.info('Evaluating %s on %s (%d samples).', workdir, split, num_samples)
    metrics = report.evaluate(workdir, split, num_samples, max_examples or None, seed=seed,
                                checkpoint=checkpoint)

  dataset, model, params, step, mesh, batch_size = _restored_run(workdir, config, checkpoint)
  key = jax.random.fold_in(jax.random.key(seed), 0xa11)
  pair_key, interp_key, sample_key = jax.random.split(key, 3)
  rng = np.random.default_rng(seed)

  train = dataset.eval_images('train', seed)
  subset = np.arange(len(train))
  if 0 < max_examples < len(train):
    subset = np.sort(rng.choice(len(train), max_examples, replace=False))
  logging.info('Closest pairs of q(z|x) over %d training images.', len(subset))
  pairs = closest_pair_analysis(model, params, train[subset], pair_key, mesh, batch_size,
                                num_samples)

  ends = rng.choice(len(train), (num_pairs, 2), replace=False)
  rows, log_pz = interpolations(model, params, train[ends[:, 0]], train[ends[:, 1]], num_steps,
                                interp_key, num_samples)
  samples = np.array(compiled.jit(
      lambda p, k: models.sample_images(model, p, k, 36, dataset.input_shape))(params, sample_key))
  grid = samples.reshape((6, 6) + samples.shape[1:])
  nearest = nearest_images(grid[:, 4], train)
  grid[:, 5] = data.to_float(train[nearest])

  result = {
      'workdir': workdir, 'step': int(step), 'checkpoint': checkpoint,
      'metrics': {k: metrics[k] for k in ('nll', 'elbo', 'reconstruction', 'kl', 'kl_z_given_x',
                                          'active_units', 'num_samples', 'num_examples', 'split')
                  if k in metrics},
      'closest_pairs': {
          'num_examples': int(len(subset)),
          'posterior_std': dict(summary(pairs['stds']), histogram=histogram(pairs['stds'], 50, True)),
          'distance': dict(summary(pairs['distances']), histogram=histogram(pairs['distances'])),
          'normalized_distance': dict(summary(pairs['normalized_distances']),
                                      histogram=histogram(pairs['normalized_distances'])),
      },
      'interpolations': {'pairs': ends.tolist(), 'log_pz': log_pz.tolist()},
      'samples': {'nearest_training_images': nearest.tolist()},
  }
  with open(os.path.join(out_dir, 'analysis.json'), 'w') as f:
    json.dump(result, f, indent=2)
  from vaeprior_jax.evaluation import images  # pylint: disable=g-import-not-at-top
  images.save_grid(grid.reshape((-1,) + samples.shape[1:]),
                   os.path.join(out_dir, 'figure1_samples.png'), num_cols=6)
  plot_interpolations(rows, log_pz, os.path.join(out_dir, 'figure2_interpolations.png'))
  plot_histograms({os.path.basename(os.path.normpath(workdir)): pairs},
                  os.path.join(out_dir, 'figure3_histograms.png'))
  result['_pairs'] = pairs  # For comparisons across workdirs (not written).
  return result


def plot_interpolations(rows: np.ndarray, log_pz: np.ndarray, path: str):
  """Fig. 2: each pair's images (ends = the training points) above a heat-map strip of log p(z)."""
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  num_pairs, num_cols = rows.shape[:2]
  fig = Figure(figsize=(num_cols, 1.5 * num_pairs))
  axes = fig.subplots(2 * num_pairs, num_cols,
                      gridspec_kw={'height_ratios': [3, 1] * num_pairs}, squeeze=False)
  vmin, vmax = float(np.min(log_pz)), float(np.max(log_pz))
  for p in range(num_pairs):
    for c in range(num_cols):
      ax = axes[2 * p, c]
      ax.imshow(rows[p, c, ..., 0] if rows.shape[-1] == 1 else rows[p, c], cmap='gray', vmin=0,
                vmax=1)
      ax.axis('off')
      ax = axes[2 * p + 1, c]
      ax.axis('off')
      if 0 < c < num_cols - 1:
        ax.imshow([[log_pz[p, c - 1]]], cmap='viridis', vmin=vmin, vmax=vmax, aspect='auto')
        ax.text(0, 0, f'{log_pz[p, c - 1]:.0f}', ha='center', va='center', fontsize=6, color='w')
  fig.suptitle('interpolations between training points; log p(z) below', fontsize=8)
  fig.savefig(path, dpi=100)


def plot_histograms(runs: Dict[str, Dict[str, np.ndarray]], path: str):
  """Fig. 3: per-dimension posterior stds, closest-pair distances and normalized distances, one
  overlaid histogram per run."""
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  fig = Figure(figsize=(12, 3.2))
  axes = fig.subplots(1, 3)
  panels = (('stds', 'per-dimension std of q(z|x)', True), ('distances', 'closest-pair distance',
                                                            False),
            ('normalized_distances', 'normalized distance', False))
  for ax, (key, title, log_x) in zip(axes, panels):
    values = [np.asarray(r[key]).reshape(-1) for r in runs.values()]
    lo = min(float(v[v > 0].min()) if log_x else float(v.min()) for v in values)
    hi = max(float(v.max()) for v in values)
    bins = np.geomspace(lo, hi, 60) if log_x else np.linspace(lo, hi, 60)
    for name, v in zip(runs, values):
      ax.hist(v, bins=bins, alpha=0.5, density=True, label=name)
    if log_x:
      ax.set_xscale('log')
    ax.set_title(title, fontsize=9)
  axes[0].legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=100)


# ------------------------------------------------------------------ Dai & Wipf's two-stage analyses

def singular_value_spectrum(samples: np.ndarray) -> np.ndarray:
  """Singular values of samples [N, d] divided by sqrt(N), descending: the root mean squares along
  the principal axes (about 1 each for N(0, I); Dai & Wipf's Fig. 1 right)."""
  samples = np.asarray(samples, np.float64)
  if samples.ndim != 2:
    raise ValueError(f'singular_value_spectrum needs samples [N, d], got {samples.shape}.')
  return np.linalg.svd(samples / np.sqrt(len(samples)), compute_uv=False)


def two_stage_latents(model, params, images: np.ndarray, key: Array, mesh,
                      batch_size: int = 128) -> Tuple[np.ndarray, np.ndarray]:
  """One z ~ q(z|x) of the first stage and one u ~ q(u|z) of the second per image: ([N, d_z],
  [N, d_u])."""

  def latents(m, x, k):
    z = m.second_stage_inputs(x, jax.random.fold_in(k, 0))
    return jnp.concatenate([z, m.second.sample_posterior(z, jax.random.fold_in(k, 1))], axis=-1)

  fn = compiled.jit(lambda p, x, k: model.apply(models.as_variables(p), x, k, method=latents))
  both = _map_batches(fn, params, [images], key, mesh, batch_size)
  d_z = model.latent_levels[0][1]
  return both[:, :d_z], both[:, d_z:]


def metric_curve(workdir: str, name: str):
  """[[step, value], ...] of metric `name` in workdir/metrics.jsonl (the logged window means)."""
  import json  # pylint: disable=g-import-not-at-top
  import os  # pylint: disable=g-import-not-at-top
  rows = []
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    for line in f:
      if line.strip():
        entry = json.loads(line)
        if name in entry:
          rows.append([int(entry['step']), float(entry[name])])
  return rows


def analyze_two_stage(workdir: str, max_examples: int = 10000, seed: int = 0,
                      checkpoint: str = 'auto') -> Dict:
  """Dai & Wipf's Fig. 1 for a two-stage workdir: gamma and gamma_z over training (from
  metrics.jsonl), and the singular-value spectra of z ~ q(z|x) (first stage) and u ~ q(u|z) (second
  stage) over training images (a seeded subset of `max_examples`), beside that of as many N(0, I)
  samples; their Euclidean distances to it. Writes analysis/two_stage.json, figure1_gamma.png and
  figure1_spectra.png."""
  import json  # pylint: disable=g-import-not-at-top
  import os  # pylint: disable=g-import-not-at-top
  from vaeprior_jax import checkpoints  # pylint: disable=g-import-not-at-top
  config = checkpoints.load_config(workdir)
  if models.model_class(config.model) is not models.TwoStageVAE:
    raise ValueError(f'{workdir} is not a two-stage run (model.two_stage is False).')
  dataset, model, params, step, mesh, batch_size = _restored_run(workdir, config, checkpoint)
  train = dataset.eval_images('train', seed)
  rng = np.random.default_rng(seed)
  subset = np.arange(len(train))
  if 0 < max_examples < len(train):
    subset = np.sort(rng.choice(len(train), max_examples, replace=False))
  z, u = two_stage_latents(model, params, train[subset], jax.random.key(seed), mesh, batch_size)
  spectra = {'q_z': singular_value_spectrum(z), 'q_u': singular_value_spectrum(u),
             'standard_normal': singular_value_spectrum(rng.normal(size=z.shape))}
  result = {
      'workdir': workdir, 'step': int(step), 'num_examples': int(len(subset)),
      'gamma': metric_curve(workdir, 'gamma'), 'gamma_z': metric_curve(workdir, 'gamma_z'),
      'spectra': {k: v.tolist() for k, v in spectra.items()},
      'distance_to_standard_normal': {
          k: float(np.linalg.norm(spectra[k] - spectra['standard_normal'][:len(spectra[k])]))
          for k in ('q_z', 'q_u')},
  }
  out_dir = os.path.join(workdir, 'analysis')
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, 'two_stage.json'), 'w') as f:
    json.dump(result, f, indent=2)
  _plot_two_stage(result, out_dir)
  return result


def _plot_two_stage(result: Dict, out_dir: str):
  import os  # pylint: disable=g-import-not-at-top
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  fig = Figure(figsize=(4, 3))
  ax = fig.subplots()
  for name in ('gamma', 'gamma_z'):
    if result[name]:
      steps, values = zip(*result[name])
      ax.plot(steps, values, label=name)
  ax.set_yscale('log')
  ax.set_xlabel('step')
  ax.legend()
  fig.tight_layout()
  fig.savefig(os.path.join(out_dir, 'figure1_gamma.png'), dpi=100)
  fig = Figure(figsize=(4, 3))
  ax = fig.subplots()
  for name, label in (('q_z', 'q(z), first stage'), ('q_u', 'q(u), second stage'),
                      ('standard_normal', 'N(0, I)')):
    values = result['spectra'][name]
    ax.plot(range(1, len(values) + 1), values, label=label)
  ax.set_xlabel('dimension (sorted)')
  ax.set_ylabel('singular value / sqrt(N)')
  ax.legend()
  fig.tight_layout()
  fig.savefig(os.path.join(out_dir, 'figure1_spectra.png'), dpi=100)
