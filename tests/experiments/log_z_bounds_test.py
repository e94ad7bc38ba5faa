"""experiments.log_z_bounds: the AIS bounds of a trained pull-back run at several K, as records."""

import numpy as np
import pytest

import helpers
from experiments import energy_by_radius
from experiments import log_z_bounds
from experiments.configs import compare_priors
from vaeprior_jax import checkpoints
from vaeprior_jax.evaluation import records
from vaeprior_jax.train import trainer


def test_the_bounds_of_each_temperature_count_are_recorded_and_a_rerun_repeats_none(tmp_path):
  workdir = str(tmp_path)
  config = compare_priors.get_config('pullback,runlocal')
  config.train.num_steps = 4
  config.train.vaepp_prior_samples = 4
  with helpers.mock_binarized_mnist(64):
    trainer.train_and_evaluate(config, workdir)
    out = log_z_bounds.log_z_bounds(workdir, ['5'], 4, 200, seed=3)
    assert sorted(out) == [5]
    for k, result in out.items():
      assert np.isfinite(result['log_z_lower']) and np.isfinite(result['log_z_upper'])
      assert result['settings']['num_temperatures'] == k and result['gap'] == pytest.approx(
          result['log_z_upper'] - result['log_z_lower'])
    kept = [r for r in records.read(workdir) if r['kind'] == 'log_z_bounds']
    assert [r['protocol']['temperatures'] for r in kept] == [5]
    assert kept[0]['protocol']['seed'] == 3 and kept[0]['protocol']['chains'] == 4
    again = log_z_bounds.log_z_bounds(workdir, ['5'], 4, 200, seed=3)  # Found, not rerun.
    assert len([r for r in records.read(workdir) if r['kind'] == 'log_z_bounds']) == 1
    assert again[5]['log_z_lower'] == out[5]['log_z_lower']
    with pytest.raises(ValueError, match=r'sampler_steps \(10\) must be at least 2 x'):
      log_z_bounds.log_z_bounds(workdir, ['5'], 4, 10, seed=3)
    # The landscape along rays, and where forward chains end, of the same run.
    land = energy_by_radius.energy_by_radius(workdir, 4, 3.0, 8, 0, ais_temperatures=5)
  d = config.model.latent_dim
  radii = np.asarray(land['radii'])
  # log f = log N(r u; 0, I) - E ray by ray, so its quantiles are the energy's, mirrored.
  for q, mirror in (('q5', 'q95'), ('q50', 'q50'), ('q95', 'q5')):
    np.testing.assert_allclose(
        land['log_f'][q], -0.5 * radii**2 - 0.5 * d * np.log(2 * np.pi)
        - np.asarray(land['energy'][mirror]), rtol=1e-4, atol=1e-3)
  forward = land['ais_forward']
  assert forward['chains'] == 4 and len(forward['top_energies']) == 4
  assert forward['lower_bound'] >= max(forward['top_log_weights']) - np.log(4) - 1e-4
  for name in ('energy_by_radius.png', 'energy_by_radius_images.png', 'energy_by_radius_ais.png'):
    assert (tmp_path / 'analysis' / name).read_bytes()[:4] == b'\x89PNG'
  other = tmp_path / 'standard'  # Refused from its config alone, before anything is loaded.
  other.mkdir()
  checkpoints.save_config(compare_priors.get_config('standard,runlocal'), str(other))
  with pytest.raises(ValueError, match='is not a pull-back run'):
    log_z_bounds.log_z_bounds(str(other), ['5'], 4, 200, seed=0)
