"""AIS bounds on log Z (`priors/pullback/ais.py`) against truths computed otherwise: a closed form
where the energy is quadratic, quadrature of a small critic's density in 2-D."""

import json
import math
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vaeprior_jax.priors.pullback import ais


def _quadratic(dim, beta, seed=0):
  """E(z) = beta (z'Az/2 + b'z + c): f = N(0, I) exp(-E) is a Gaussian integral,
  log Z = -log|I + beta A|/2 + beta^2 b'(I + beta A)^-1 b / 2 - beta c."""
  rng = np.random.default_rng(seed)
  m = rng.normal(size=(dim, dim))
  a, b, c = 3.0 * m @ m.T / dim, rng.normal(size=dim), 0.3
  p = np.eye(dim) + beta * a
  truth = -0.5 * np.linalg.slogdet(p)[1] + 0.5 * beta ** 2 * b @ np.linalg.solve(p, b) - beta * c
  a32, b32 = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
  energy = lambda z: beta * (0.5 * jnp.einsum('ci,ij,cj->c', z, a32, z) + z @ b32 + c)
  return energy, truth


def _settings(k, chains=256):
  return ais.Settings(num_chains=chains, num_temperatures=k, pilot_chains=64, sampler_steps=1000,
                      sampler_kept=100)


def _assert_sandwich(result, truth, slack=0.02):
  """Each bound on its side of the truth, within 4 standard errors plus `slack`; the chains' mean
  log weights strictly so (Jensen), within their noise."""
  lo, hi = result['log_z_lower'], result['log_z_upper']
  assert lo - 4 * result['log_z_lower_stderr'] <= truth + slack, (lo, truth)
  assert hi + 4 * result['log_z_upper_stderr'] >= truth - slack, (hi, truth)
  assert abs(lo - truth) < 4 * result['log_z_lower_stderr'] + slack
  assert abs(hi - truth) < 4 * result['log_z_upper_stderr'] + slack
  assert result['log_z_lower_mean'] <= truth + slack <= result['log_z_upper_mean'] + 2 * slack


def test_bounds_sandwich_a_closed_form_log_z_in_8_dimensions_and_close_with_more_temperatures():
  energy, truth = _quadratic(8, beta=2.0)
  few = ais.log_z_bounds(energy, 8, jax.random.key(0), _settings(10))
  many = ais.log_z_bounds(energy, 8, jax.random.key(0), _settings(300))
  _assert_sandwich(many, truth)
  # The looser mean bounds hold at any number of temperatures and close as they multiply.
  assert few['log_z_lower_mean'] < truth < few['log_z_upper_mean']
  gap = lambda r: r['log_z_upper_mean'] - r['log_z_lower_mean']
  assert gap(many) < 0.25 * gap(few), (gap(few), gap(many))
  assert abs(many['gap']) < 4 * math.hypot(many['log_z_lower_stderr'], many['log_z_upper_stderr'])
  # The chains the reverse run starts from mixed: R-hat near 1; MALA near its target acceptance.
  assert many['sampler']['rhat_energy'] < 1.05 and many['sampler']['ess_energy'] > 100
  assert 0.4 < many['acceptance_forward'] < 0.75
  assert many["energy_gradients"] == 2 * 300 * 2 + 1000


class _Critic(nn.Module):
  """D(G(z)) for z in R^2: a small random 'decoder' to 16 values and a critic on them."""

  @nn.compact
  def __call__(self, z):
    x = nn.sigmoid(nn.Dense(16)(nn.tanh(nn.Dense(8)(z))))
    return nn.Dense(1)(nn.leaky_relu(nn.Dense(8)(x), 0.2))[..., 0]


def test_bounds_sandwich_the_quadrature_of_a_small_critics_density_in_2d():
  critic = _Critic()
  params = critic.init(jax.random.key(3), jnp.zeros((1, 2)))
  params = jax.tree.map(lambda p: 3.0 * p, params)  # A critic whose exp(-beta D) is far from flat.
  beta = 4.0
  energy = lambda z: beta * critic.apply(params, z)
  grid = np.linspace(-9.0, 9.0, 1201)
  zz = np.stack(np.meshgrid(grid, grid, indexing='ij'), -1).reshape(-1, 2).astype(np.float32)
  log_f = (-0.5 * np.sum(zz.astype(np.float64) ** 2, -1) - math.log(2 * math.pi)
           - np.asarray(energy(jnp.asarray(zz)), np.float64))
  top = log_f.max()
  truth = top + math.log(np.sum(np.exp(log_f - top)) * (grid[1] - grid[0]) ** 2)
  assert abs(truth) > 1.0  # Far from the base density's log Z of 0.
  result = ais.log_z_bounds(energy, 2, jax.random.key(1), _settings(200))
  _assert_sandwich(result, truth)


def test_schedule_and_settings_are_checked():
  t = ais.sigmoid_schedule(50)
  assert t[0] == 0.0 and t[-1] == 1.0 and np.all(np.diff(t) > 0)
  with pytest.raises(ValueError, match='num_temperatures must be >= 1, got 0'):
    ais.sigmoid_schedule(0)
  with pytest.raises(ValueError, match='AIS setting num_chains must be an integer >= 1, got 0'):
    ais.Settings(num_chains=0).check()
  with pytest.raises(ValueError, match=r'sampler_steps \(10\) must be at least 2 x sampler_kept'):
    ais.Settings(sampler_steps=10, sampler_kept=50).check()


def test_annealing_runs_in_blocks_of_temperatures_and_stops_between_them():
  """The run is the same in one compiled call or in blocks (the keys are the whole run's), and a
  stop request ends it between two blocks (`interrupts`)."""
  from vaeprior_jax import interrupts  # pylint: disable=g-import-not-at-top
  energy = lambda z: 0.5 * jnp.sum(jnp.square(z - 1.0), axis=-1)
  temps = jnp.asarray(ais.sigmoid_schedule(20), jnp.float32)
  sizes = jnp.full((len(temps) - 1,), 0.3, jnp.float32)
  z0 = jax.random.normal(jax.random.key(0), (16, 3))
  anneal = ais._anneal  # pylint: disable=protected-access
  whole = anneal(energy, z0, temps, sizes, jax.random.key(1), 2, False, block=1000)
  blocks = anneal(energy, z0, temps, sizes, jax.random.key(1), 2, False, block=7)
  for a, b in zip(whole, blocks):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
  assert blocks[2].shape == (len(temps) - 1,)
  interrupts.request('SIGTERM')
  try:
    with pytest.raises(interrupts.Interrupted):
      anneal(energy, z0, temps, sizes, jax.random.key(1), 2, False, block=7)
  finally:
    interrupts.clear()


def test_the_reverse_runs_start_is_the_same_in_any_blocks_and_stops_between_them():
  """`sample_target` (the MALA chains that start the reverse run) gives the same chains in one
  compiled call or in blocks of steps, and a stop request ends it between two calls."""
  from vaeprior_jax import interrupts  # pylint: disable=g-import-not-at-top
  energy = lambda z: 0.5 * jnp.sum(jnp.square(z - 1.0), axis=-1)
  z0 = jax.random.normal(jax.random.key(0), (8, 3))
  whole = ais.sample_target(energy, z0, jax.random.key(2), 60, 0.4, num_kept=10, block=1000)
  blocks = ais.sample_target(energy, z0, jax.random.key(2), 60, 0.4, num_kept=10, block=7)
  np.testing.assert_allclose(np.asarray(whole[0]), np.asarray(blocks[0]), rtol=1e-5, atol=1e-6)
  for key in ('rhat_energy', 'ess_energy', 'acceptance'):
    assert whole[1][key] == pytest.approx(blocks[1][key], rel=1e-5), key
  assert 0 < whole[1]['acceptance'] < 1
  interrupts.request('SIGTERM')
  try:
    with pytest.raises(interrupts.Interrupted):
      ais.sample_target(energy, z0, jax.random.key(2), 60, 0.4, num_kept=10, block=7)
  finally:
    interrupts.clear()


@pytest.mark.parametrize('forward_smc', [0, 1])
def test_bounds_stopped_in_any_stage_go_on_to_the_same_numbers(tmp_path, monkeypatch, forward_smc):
  """`log_z_bounds` with a progress file, stopped by a signal in each stage in turn (the pilot,
  the forward run (AIS or SMC), the sampler's burn-in and kept states, the reverse run): the rerun
  goes on from the kept progress, runs only the compiled calls left, and gives the uninterrupted
  bounds bit for bit. Progress kept for another key is not used."""
  from vaeprior_jax import interrupts  # pylint: disable=g-import-not-at-top
  energy = lambda z: 0.5 * jnp.sum(jnp.square(z - 1.0), axis=-1)
  settings = ais.Settings(num_chains=4, num_temperatures=120, pilot_chains=4, sampler_steps=200,
                          sampler_kept=10, forward_smc=forward_smc)
  path = str(tmp_path / 'ais.partial.npz')
  checks, stop_at, real_check = [], [], interrupts.check

  def check():
    checks.append(1)
    if len(checks) in stop_at:
      interrupts.request('SIGTERM')
    real_check()

  monkeypatch.setattr(interrupts, 'check', check)
  bounds = lambda key=3: ais.log_z_bounds(energy, 3, jax.random.key(key), settings,
                                          partial_file=path, protocol={'step': 7})
  # 'seconds' aside; NaN (SMC's lower-bound spread) as a string, so that equal results compare so.
  strip = lambda r: json.loads(json.dumps({k: v for k, v in r.items() if k != 'seconds'}),
                               parse_constant=str)
  whole = strip(bounds())
  total = len(checks)  # 3 + 3 annealing blocks, 2 + 2 sampler calls, 3 reverse blocks.
  assert total == 13 and not os.path.exists(path)
  for stop in (2, 5, 8, 10, 12):  # pilot, forward, burn-in, kept states, reverse
    checks.clear()
    stop_at[:] = [stop]
    try:
      with pytest.raises(interrupts.Interrupted):
        bounds()
    finally:
      interrupts.clear()
    assert os.path.exists(path)
    checks.clear()
    stop_at.clear()
    assert strip(bounds()) == whole, stop
    assert len(checks) == total - stop + 1 and not os.path.exists(path), stop
  # Progress of another protocol (here the key) is not mixed in.
  stop_at[:] = [8]
  checks.clear()
  try:
    with pytest.raises(interrupts.Interrupted):
      bounds(4)
  finally:
    interrupts.clear()
  stop_at.clear()
  other = strip(bounds())
  assert other == whole


def test_tempered_smc_forward_estimates_a_closed_form_log_z_without_bias_and_starts_the_reverse():
  """`forward_smc`: BlackJAX's tempered SMC on the same path. Its Z^ is unbiased: over 4 seeds,
  log mean Z^/Z is near 0 and each log Z^ near the truth; the reverse run from its particles holds
  the truth within its noise, its chains mixed."""
  energy, truth = _quadratic(8, beta=2.0)
  results = []
  for seed in range(4):
    settings = _settings(100)
    settings.forward_smc = 1
    results.append(ais.log_z_bounds(energy, 8, jax.random.key(seed), settings))
  lower = np.array([r['log_z_lower'] for r in results])
  assert np.all(np.abs(lower - truth) < 0.5), (lower, truth)
  assert abs(np.log(np.mean(np.exp(lower - truth)))) < 0.2, (lower, truth)
  for r in results:
    assert math.isnan(r['log_z_lower_stderr']) and r['settings']['forward_smc'] == 1
    assert r['log_z_upper'] + 4 * r['log_z_upper_stderr'] >= truth - 0.02
    assert r['sampler']['rhat_energy'] < 1.05
    assert 0.4 < r['acceptance_forward'] < 0.75


def test_smc_settings_are_checked():
  with pytest.raises(ValueError, match='AIS setting forward_smc must be 0 or 1, got 2'):
    ais.Settings(forward_smc=2).check()
  with pytest.raises(ValueError, match='AIS setting forward_smc must be an integer >= 0'):
    ais.Settings(forward_smc=-1).check()
