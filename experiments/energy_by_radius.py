r"""Where a trained pull-back prior puts its mass: the energy E(z) = β D(G(z)) and log f(z) =
log N(z; 0, I) - E(z) along random rays z = r u (|u| = 1) of the latent space, beside the radii
of the data's posterior means, and the decoded images G(r u) at a few radii.

  python -m experiments.energy_by_radius --workdir=runs/leaderboard/pullback/seed0

Writes WORKDIR/analysis/energy_by_radius.json (the curves' quantiles per radius; the radii of the
posterior means of `--images` training images), energy_by_radius.png (the curves) and
energy_by_radius_images.png (G(r u) of 8 rays, a row per radius), and where the chains of a
forward AIS run (`--ais_temperatures`, one chain per ray) end: their radii and energies (in the
JSON) and energy_by_radius_ais.png (two rows: the decoded ends of the 16 chains with the largest
weights; a row: of the 8 with the smallest). A critic that rates the
decoder's images far from the origin as data (E near its value on real images) gives f a region
the paper's log Z estimators (prior draws, posterior samples) do not reach; the forward AIS bound
(`experiments.log_z_bounds`) does.
"""

import os

from absl import app
from absl import flags

from experiments import common



def energy_by_radius(workdir: str, rays: int, max_radius: float, num_images: int, seed: int,
                     ais_temperatures: int = 300):
  import math  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from vaeprior_jax import files  # pylint: disable=g-import-not-at-top
  from vaeprior_jax.evaluation import images as images_lib  # pylint: disable=g-import-not-at-top
  from vaeprior_jax.priors.pullback import normalizer  # pylint: disable=g-import-not-at-top
  config = common.pullback_run_config(workdir)
  dataset, model, variables, step = common.restore_run(workdir, config)
  d = config.model.latent_dim
  key = jax.random.key(seed)
  u = jax.random.normal(jax.random.fold_in(key, 0), (rays, d))
  u = u / jnp.linalg.norm(u, axis=-1, keepdims=True)
  radii = np.linspace(0.0, max_radius, 57)
  energy = jax.jit(lambda z: model.apply(variables, z, method=normalizer._beta_energy))  # pylint: disable=protected-access
  e = np.stack([np.asarray(energy(r * u)) for r in radii])  # [R, rays]
  log_f = -0.5 * radii[:, None] ** 2 - 0.5 * d * math.log(2 * math.pi) - e
  rows = np.random.default_rng(seed).permutation(len(dataset.train))[:num_images]
  x = jnp.asarray(dataset.eval_images('train', seed)[np.sort(rows)])
  mean, _ = model.apply(variables, x, method=lambda m, x_: m.prior_context().encoder(x_))
  mean_radii = np.linalg.norm(np.asarray(mean), axis=-1)
  q = lambda a: {f'q{p}': np.percentile(a, p, axis=-1).tolist() for p in (5, 50, 95)}
  result = {'step': int(step), 'rays': rays, 'radii': radii.tolist(), 'energy': q(e),
            'log_f': q(log_f), 'beta': float(model.apply(
                variables, method=lambda m: m.prior.beta())),
            'posterior_mean_radius': {'q5': float(np.percentile(mean_radii, 5)),
                                      'q50': float(np.median(mean_radii)),
                                      'q95': float(np.percentile(mean_radii, 95)),
                                      'images': int(num_images)},
            # The radius of N(0, I)'s typical set, sqrt(d).
            'typical_radius': math.sqrt(d)}
  os.makedirs(os.path.join(workdir, 'analysis'), exist_ok=True)

  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  shown = [4, 16, 24, 32, 40, 48]  # Radius indices of the decoded rows.
  fig, ax = plt.subplots(figsize=(6, 4))
  for name, color in (('energy', 'C3'), ('log_f', 'C0')):
    ax.plot(radii, result[name]['q50'], color=color, label=f'{name} (median over rays)')
    ax.fill_between(radii, result[name]['q5'], result[name]['q95'], color=color, alpha=0.2)
  ax.axvspan(result['posterior_mean_radius']['q5'], result['posterior_mean_radius']['q95'],
             color='C2', alpha=0.2, label='posterior means, 5-95%')
  ax.axvline(math.sqrt(d), color='k', lw=0.8, ls=':', label='sqrt(d): N(0, I)\'s typical radius')
  ax.set_xlabel('radius |z|')
  ax.legend(fontsize=7)
  ax.set_title(f'E = beta D(G(z)) and log f along {rays} rays (step {int(step)})', fontsize=9)
  fig.tight_layout()
  fig.savefig(os.path.join(workdir, 'analysis', 'energy_by_radius.png'), dpi=110)
  plt.close(fig)
  # The decoder's means G(r u) of the first 8 rays, one row per radius of `shown`.
  grid = np.concatenate([np.asarray(model.apply(
      variables, radii[i] * u[:8], method=lambda m, z: m.prior_context().decode_mean(z)))
                         for i in shown])
  images_lib.save_grid(np.clip(grid, 0, 1),
                       os.path.join(workdir, 'analysis', 'energy_by_radius_images.png'), num_cols=8)
  result['image_rows_radii'] = [float(radii[i]) for i in shown]
  # Where the forward AIS chains that carry the lower bound on log Z end: their radii and
  # energies, and the decoded images of the 16 with the largest weights above 8 of the smallest.
  from vaeprior_jax.priors.pullback import ais  # pylint: disable=g-import-not-at-top
  log_w, z_end = ais.forward_chains(energy, d, jax.random.fold_in(key, 2), ais_temperatures,
                                    rays)
  log_w, z_end = np.asarray(log_w), np.asarray(z_end)
  order = np.argsort(-log_w)
  end_energy = np.asarray(energy(jnp.asarray(z_end)))
  end_radius = np.linalg.norm(z_end, axis=-1)
  top = order[:16]
  result['ais_forward'] = {
      'temperatures': ais_temperatures, 'chains': rays,
      'lower_bound': float(np.max(log_w) + np.log(np.mean(np.exp(log_w - np.max(log_w))))),
      'top_log_weights': log_w[top].tolist(), 'top_energies': end_energy[top].tolist(),
      'top_radii': end_radius[top].tolist(), 'median_log_weight': float(np.median(log_w)),
      'median_energy': float(np.median(end_energy)), 'median_radius': float(np.median(end_radius)),
      'chains_below_energy_10': int(np.sum(end_energy < 10))}
  decoded = np.asarray(model.apply(variables, jnp.asarray(z_end[np.concatenate([top, order[-8:]])]),
                                   method=lambda m, z: m.prior_context().decode_mean(z)))
  images_lib.save_grid(np.clip(decoded, 0, 1),
                       os.path.join(workdir, 'analysis', 'energy_by_radius_ais.png'), num_cols=8)
  files.write_json_atomically(os.path.join(workdir, 'analysis', 'energy_by_radius.json'), result)
  return result


def _define_flags():
  """The binary's flags, defined only when it runs (its functions are importable beside other
  binaries' flags)."""
  global _WORKDIR, _RAYS, _MAX_RADIUS, _IMAGES, _SEED, _AIS_TEMPERATURES  # pylint: disable=global-statement
  _WORKDIR = flags.DEFINE_string('workdir', None, 'A trained run with model.prior=pullback.')
  _RAYS = flags.DEFINE_integer('rays', 256, 'Random directions.')
  _MAX_RADIUS = flags.DEFINE_float('max_radius', 14.0, 'The largest radius.')
  _IMAGES = flags.DEFINE_integer('images', 2000, 'Training images whose posterior means are placed.')
  _SEED = flags.DEFINE_integer('seed', 0, 'Seed of the directions and images.')
  _AIS_TEMPERATURES = flags.DEFINE_integer('ais_temperatures', 300,
                                           'Temperatures of the forward AIS run whose chains are shown.')
  flags.mark_flags_as_required(['workdir'])


def main(argv):
  common.start(argv)
  with common.user_errors(), common.stoppable():
    result = energy_by_radius(_WORKDIR.value, _RAYS.value, _MAX_RADIUS.value, _IMAGES.value,
                              _SEED.value, _AIS_TEMPERATURES.value)
    print({k: result[k] for k in ('beta', 'posterior_mean_radius', 'typical_radius', 'ais_forward')})


if __name__ == '__main__':
  _define_flags()
  app.run(main)
