"""Bounds on log Z of a density f(z) = p_base(z) exp(-E(z)) by annealed importance sampling (AIS),
run in both directions (bidirectional Monte Carlo; Grosse, Ghahramani & Adams, 2015).

For the pull-back prior, E(z) = beta D(G(z)) and p_base = N(0, I), so Z is the prior's partition
function. The path of densities is pi_t(z) ∝ p_base(z) exp(-t E(z)), t from 0 to 1 on a schedule
t_0 = 0 < t_1 < ... < t_K = 1 (`sigmoid_schedule`).

  forward   z_0 ~ p_base (exact); at each k, log w += -(t_k - t_{k-1}) E(z_{k-1}), then MALA steps
            that leave pi_{t_k} invariant. E[w] = Z, so log mean(w) is a stochastic LOWER bound on
            log Z (Jensen: E[log Z^] <= log Z).
  reverse   z_K ~ p = f / Z; at each k from K down, log w += (t_k - t_{k-1}) E(z_k), then MALA steps
            that leave pi_{t_{k-1}} invariant. E[w] = 1/Z, so -log mean(w) is a stochastic UPPER
            bound on log Z, provided z_K are exact samples of p.

The reverse direction's starting points here are not exact: they are the ends of long MALA chains on
p (`sample_target`), started from the forward chains' final states, and their mixing is reported as
the potential scale reduction (R-hat) and effective sample size of the chains' energy and
coordinates (BlackJAX's diagnostics). Read the upper bound as exact only as far as R-hat is close
to 1. The gap between the two bounds is the error bar; it closes as the number of temperatures grows
(tests/priors/ais_test.py checks both bounds against closed forms and quadrature).

With `Settings.forward_smc`, the forward direction is tempered sequential Monte Carlo instead
(BlackJAX's `tempered` SMC kernel: the same schedule and MALA moves, the particles resampled by their
weights at every temperature). Its Z^ is unbiased too, so log Z^ is again a stochastic lower bound;
where a few AIS chains carry all the weight (a density whose mass sits in regions N(0, I) rarely
reaches), resampling lets the particles follow that mass, and the reverse run then starts from
SMC's final particles, nearer to exact samples of p than unweighted AIS ends. One SMC run gives no
standard error of its log Z^ (independent runs do).

The transitions are BlackJAX's MALA kernel. Their step size per temperature is fixed before the
bounds are run (a pilot run with its own chains adapts it towards an acceptance rate of 0.574,
`tune_step_sizes`), so that each transition is a fixed pi_t-invariant kernel, as AIS's unbiasedness
needs.
"""

import dataclasses
import json
import math
import os
import time
from typing import Callable, Dict, Optional

from absl import logging

import blackjax
import jax
import jax.numpy as jnp
import numpy as np
from blackjax.mcmc import mala as bj_mala
from blackjax.smc import resampling as bj_resampling
from blackjax.smc import tempered as bj_tempered

from vaeprior_jax import config as config_lib
from vaeprior_jax import files
from vaeprior_jax import interrupts

Array = jax.Array
EnergyFn = Callable[[Array], Array]  # [C, d] -> [C]

TARGET_ACCEPTANCE = 0.574  # MALA's optimal acceptance rate (Roberts & Rosenthal, 1998).


def sigmoid_schedule(num_temperatures: int, delta: float = 4.0) -> np.ndarray:
  """t_0 = 0 < ... < t_K = 1, K = num_temperatures: a sigmoid in k rescaled to [0, 1] (Grosse et
  al., 2015), dense near both ends where the density changes fastest per unit of t."""
  if num_temperatures < 1:
    raise ValueError(f'num_temperatures must be >= 1, got {num_temperatures}.')
  s = 1.0 / (1.0 + np.exp(-delta * (2.0 * np.arange(num_temperatures + 1) / num_temperatures - 1.0)))
  return (s - s[0]) / (s[-1] - s[0])


def _standard_normal_log_prob(z: Array) -> Array:
  return -0.5 * jnp.sum(jnp.square(z), -1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)


def _energy_and_grad(energy_fn: EnergyFn, z: Array):
  """(E(z) [C], dE/dz [C, d]) of independent chains, with one backward pass."""
  e, vjp = jax.vjp(energy_fn, z)
  return e, vjp(jnp.ones_like(e))[0]


def _state(z, t, e, g):
  """BlackJAX's MALA state of chains z [C, d] at temperature t, from E and its gradient:
  log pi_t = log N(z; 0, I) - t E (up to a constant), its gradient -z - t dE/dz."""
  return bj_mala.MALAState(z, _standard_normal_log_prob(z) - t * e, -z - t * g)


def _mala_steps(energy_fn: EnergyFn, state, t, step_size, key, num_steps: int):
  """`num_steps` MALA steps of every chain on pi_t; returns (state, mean acceptance rate)."""
  kernel = bj_mala.build_kernel()
  logdensity = lambda z: _standard_normal_log_prob(z) - t * energy_fn(z[None])[0]
  step = jax.vmap(lambda k, s: kernel(k, s, logdensity, step_size))

  def body(carry, k):
    state, accepted = carry
    state, info = step(jax.random.split(k, state.position.shape[0]), state)
    return (state, accepted + jnp.mean(info.acceptance_rate)), None

  (state, accepted), _ = jax.lax.scan(body, (state, jnp.zeros(())),
                                      jax.random.split(key, num_steps))
  return state, accepted / num_steps


# Temperatures (or MALA steps, for `sample_target`) per compiled call: between two calls a SIGTERM
# stops the run (`interrupts`), so a call must take seconds, not the minutes a whole run of a trained
# model takes.
ANNEAL_BLOCK = 50


class Progress:
  """The arrays an AIS run has reached, stage by stage (the pilot, the forward run, the sampler's
  burn-in and kept states, the reverse run), kept in one .npz so that the run stopped by a signal
  or a kill goes on from there and ends with the same bounds bit for bit.

  Each stage's loop reports after every compiled call (`update`); the file is written atomically
  every `save_every_seconds` and on a signal (`save`), with the run's protocol, and removed by
  `finish`. A file of another protocol is not read (one log line says so). `path=None` keeps
  nothing."""

  def __init__(self, path: Optional[str], protocol: Dict, save_every_seconds: float = 30.0):
    self.path, self.save_every_seconds = path, save_every_seconds
    self._protocol = json.dumps(protocol, sort_keys=True, default=float)
    self._stages: Dict[str, Dict[str, np.ndarray]] = {}
    self._saved_at = time.time()
    kept = files.read_kept_npz(path, self._protocol, 'AIS progress') if path else None
    for name, value in (kept or {}).items():
      stage, _, key = name.partition('/')
      self._stages.setdefault(stage, {})[key] = value
    if any('next' not in v for v in self._stages.values()):
      logging.warning('AIS: ignoring the unreadable progress in %s (a stage without its next '
                      'step).', path)
      self._stages = {}
    if self._stages:
      logging.info('AIS: going on from %s (%s).', path, ', '.join(
          f'{k} at {int(v["next"])}' for k, v in self._stages.items()))

  def get(self, stage: str) -> Optional[Dict[str, np.ndarray]]:
    return self._stages.get(stage)

  def update(self, stage: str, **arrays) -> None:
    """Stage `stage` reached `arrays` (its `next` is where its loop goes on)."""
    if self.path:
      self._stages[stage] = {k: np.asarray(v) for k, v in arrays.items()}
      if time.time() - self._saved_at >= self.save_every_seconds:
        self.save()

  def save(self) -> None:
    if self.path and jax.process_index() == 0:
      files.write_kept_npz(
          self.path, self._protocol,
          **{f'{stage}/{k}': v for stage, arrays in self._stages.items() for k, v in arrays.items()})
      self._saved_at = time.time()

  def finish(self, remove: bool = True) -> None:
    """The run is done: its file removed, or (remove=False) written whole, so that a rerun of the
    job it is part of reads the run back at once."""
    if not remove:
      self.save()
    elif self.path and os.path.exists(self.path) and jax.process_index() == 0:
      os.remove(self.path)


def _kept(energy_fn: EnergyFn, state, step_size, keys, thin: int):
  """len(keys) kept states of every chain, `thin` MALA steps on p apart: (state, positions
  [kept, C, d], acceptance rates [kept])."""

  def body(state, k):
    state, accept = _mala_steps(energy_fn, state, 1.0, step_size, k, thin)
    return state, (state.position, accept)

  state, (positions, accept) = jax.lax.scan(body, state, keys)
  return state, positions, accept


_kept_jit = jax.jit(_kept, static_argnums=(0, 4))


def _segment(energy_fn: EnergyFn, carry, inputs, steps_per_temperature: int, adapt: bool):
  """One compiled stretch of `_anneal`: the scan over `inputs` (t_prev, t, step size, key) from
  `carry` (z, log weights, previous step size)."""

  def body(carry, inputs):
    z, log_w, h_prev = carry
    t_prev, t, h, k = inputs
    e, g = _energy_and_grad(energy_fn, z)
    log_w = log_w - (t - t_prev) * e  # log f_t(z) - log f_{t_prev}(z)
    h = jnp.where(adapt, h_prev, h)
    state, accept = _mala_steps(energy_fn, _state(z, t, e, g), t, h, k, steps_per_temperature)
    h_next = h * jnp.exp(jnp.clip(accept - TARGET_ACCEPTANCE, -0.5, 0.5))
    return (state.position, log_w, h_next), (h, accept)

  return jax.lax.scan(body, carry, inputs)


_segment_jit = jax.jit(_segment, static_argnums=(0, 3, 4))


def _anneal(energy_fn: EnergyFn, z: Array, temperatures: Array, step_sizes: Array, key: Array,
            steps_per_temperature: int, adapt: bool = False, block: int = ANNEAL_BLOCK,
            progress: Optional[Progress] = None, stage: str = ''):
  """AIS along `temperatures` (in the order traversed, from temperatures[0], where z are drawn):
  (log weights [C], final z, step sizes used [K], acceptance rates [K]). With `adapt`, each step
  size is the previous one moved towards TARGET_ACCEPTANCE (`tune_step_sizes` only). Runs `block`
  temperatures per compiled call, checking for a stop request between calls; with `progress`, each
  call's end is reported as `stage`, and a stage kept there goes on from where it was."""
  keys = jax.random.split(key, len(temperatures) - 1)
  inputs = (temperatures[:-1], temperatures[1:], step_sizes, keys)
  carry = (z, jnp.zeros(z.shape[0]), step_sizes[0])
  used, accept, first = [], [], 0
  kept = progress.get(stage) if progress else None
  if kept is not None:
    carry = tuple(jnp.asarray(kept[k]) for k in ('z', 'log_w', 'h'))
    used, accept, first = [kept['used']], [kept['accept']], int(kept['next'])
  for start in range(first, len(temperatures) - 1, block):
    interrupts.check()
    part = jax.tree.map(lambda a, start=start: a[start:start + block], inputs)
    carry, (h, a) = _segment_jit(energy_fn, carry, part, steps_per_temperature, adapt)
    used.append(h)
    accept.append(a)
    if progress:
      progress.update(stage, z=carry[0], log_w=carry[1], h=carry[2], used=jnp.concatenate(used),
                      accept=jnp.concatenate(accept), next=min(start + block,
                                                               len(temperatures) - 1))
  z, log_w, _ = carry
  return log_w, z, jnp.concatenate(used), jnp.concatenate(accept)


def _smc_kernel(energy_fn: EnergyFn):
  """BlackJAX's tempered SMC step on the path pi_t ∝ N(0, I) exp(-t E), MALA moves, systematic
  resampling at every temperature: (key, state, steps, t, {'step_size': [1]}) -> (state, info)."""
  return bj_tempered.build_kernel(
      lambda z: _standard_normal_log_prob(z), lambda z: -energy_fn(z[None])[0],
      bj_mala.build_kernel(), bj_mala.init, bj_resampling.systematic)


def _smc_segment(energy_fn: EnergyFn, carry, inputs, steps_per_temperature: int):
  """One compiled stretch of `_smc`: the scan over `inputs` (t, step size, key) from `carry`
  (particles, weights, current t, log Z so far)."""
  kernel = _smc_kernel(energy_fn)

  def body(carry, inputs):
    particles, weights, t_now, log_z = carry
    t, h, k = inputs
    state, info = kernel(k, bj_tempered.TemperedSMCState(particles, weights, t_now),
                         steps_per_temperature, t, {'step_size': h[None]})
    return ((state.particles, state.weights, state.tempering_param,
             log_z + info.log_likelihood_increment),
            jnp.mean(info.update_info.acceptance_rate))

  return jax.lax.scan(body, carry, inputs)


_smc_segment_jit = jax.jit(_smc_segment, static_argnums=(0, 3))


def _smc(energy_fn: EnergyFn, z: Array, temperatures: Array, step_sizes: Array, key: Array,
         steps_per_temperature: int, block: int = ANNEAL_BLOCK,
         progress: Optional[Progress] = None, stage: str = 'smc'):
  """Tempered SMC along `temperatures` from particles z ~ N(0, I) (BlackJAX: at each t_{k+1},
  resample by the weights, move under pi_{t_k} with MALA at step_sizes[k], weight by
  exp(-(t_{k+1} - t_k) E)): (log Z^ (unbiased for Z, so a stochastic lower bound on log Z),
  the final particles resampled by their weights [C, d], acceptance rates [K]). Blocks, stop
  checks and `progress` as in `_anneal`."""
  steps = len(temperatures) - 1
  keys = jax.random.split(key, steps + 1)  # One per temperature, the last for the final resampling.
  inputs = (temperatures[1:], step_sizes, keys[:steps])
  n = z.shape[0]
  carry = (z, jnp.full((n,), 1.0 / n), temperatures[0], jnp.zeros(()))
  accept, first = [], 0
  kept = progress.get(stage) if progress else None
  if kept is not None:
    carry = tuple(jnp.asarray(kept[k]) for k in ('z', 'weights', 't', 'log_z'))
    accept, first = [kept['accept']], int(kept['next'])
  for start in range(first, steps, block):
    interrupts.check()
    part = jax.tree.map(lambda a, start=start: a[start:start + block], inputs)
    carry, a = _smc_segment_jit(energy_fn, carry, part, steps_per_temperature)
    accept.append(a)
    if progress:
      progress.update(stage, z=carry[0], weights=carry[1], t=carry[2], log_z=carry[3],
                      accept=jnp.concatenate(accept), next=min(start + block, steps))
  particles, weights, _, log_z = carry
  final = bj_resampling.systematic(keys[steps], weights, n)
  return float(log_z), particles[final], jnp.concatenate(accept)


def _log_mean_exp(log_w: np.ndarray):
  """(log mean exp(log_w), its standard error by the delta method), in float64."""
  log_w = np.asarray(log_w, np.float64)
  top = np.max(log_w)
  w = np.exp(log_w - top)
  mean = np.mean(w)
  stderr = np.std(w, ddof=1) / math.sqrt(len(w)) / mean if len(w) > 1 else float('inf')
  return float(top + np.log(mean)), float(stderr)


def tune_step_sizes(energy_fn: EnergyFn, dim: int, key: Array, num_temperatures: int,
                    num_chains: int = 64, steps_per_temperature: int = 1,
                    initial_step_size: float = 0.5,
                    progress: Optional[Progress] = None) -> np.ndarray:
  """MALA step sizes per temperature [K], from a pilot forward run of `num_chains` chains that
  moves each towards the acceptance rate 0.574 (its own chains: the bounds reuse none of them)."""
  temps = jnp.asarray(sigmoid_schedule(num_temperatures), jnp.float32)
  z0 = jax.random.normal(jax.random.fold_in(key, 0), (num_chains, dim))
  h0 = jnp.full((num_temperatures,), initial_step_size, jnp.float32)
  _, _, used, _ = _anneal(energy_fn, z0, temps, h0, jax.random.fold_in(key, 1),
                          steps_per_temperature, True, progress=progress, stage='pilot')
  return np.asarray(used)


def sample_target(energy_fn: EnergyFn, z0: Array, key: Array, num_steps: int, step_size: float,
                  num_kept: int = 100, block: int = ANNEAL_BLOCK,
                  progress: Optional[Progress] = None):
  """MALA chains on p ∝ N(0, I) exp(-E) from z0 [C, d] for `num_steps` steps: (final z [C, d],
  diagnostics). The diagnostics use the last half of the chains, `num_kept` states each: R-hat and
  effective sample size (BlackJAX) of the energy and of each coordinate (the worst: max R-hat, min
  ESS), and the mean acceptance rate. Runs about `block` steps per compiled call, checking for a
  stop request between calls; with `progress`, the chains' state after each call is reported
  (stages 'burn' and 'trace'), and a run kept there goes on from where it was."""
  if num_steps < 2 * num_kept:
    raise ValueError(f'num_steps ({num_steps}) must be at least 2 x num_kept ({num_kept}).')
  e, g = _energy_and_grad(energy_fn, z0)
  state = _state(z0, 1.0, e, g)
  burn = num_steps - num_steps // 2
  thin = (num_steps // 2) // num_kept
  key_burn, key_kept = jax.random.split(key)
  burn_keys = jax.random.split(key_burn, burn)  # One per step: the run is the same in any blocks.
  kept_keys = jax.random.split(key_kept, num_kept)
  accepted, trace, first = 0.0, [], {'burn': 0, 'trace': 0}
  for stage in ('burn', 'trace'):  # The furthest stage kept holds the state to go on from.
    kept = progress.get(stage) if progress else None
    if kept is not None:
      state = bj_mala.MALAState(*(jnp.asarray(kept[k]) for k in bj_mala.MALAState._fields))
      accepted, first[stage] = float(kept['accepted']), int(kept['next'])
      if stage == 'trace':
        first['burn'], trace = burn, [jnp.asarray(kept['positions'])]

  def report(stage, done, **arrays):
    if progress:
      progress.update(stage, **state._asdict(), accepted=np.float64(accepted), next=done, **arrays)

  for start in range(first['burn'], burn, block):  # A stop request is checked between calls.
    interrupts.check()  # (Burn-in: every state is kept by the call, none by us.)
    state, _, accept = _kept_jit(energy_fn, state, step_size, burn_keys[start:start + block], 1)
    accepted += float(jnp.sum(accept))
    report('burn', min(start + block, burn))
  per_call = max(1, block // thin)  # Kept states per compiled call.
  for start in range(first['trace'], num_kept, per_call):
    interrupts.check()
    state, positions, accept = _kept_jit(energy_fn, state, step_size,
                                         kept_keys[start:start + per_call], thin)
    trace.append(positions)
    accepted += float(jnp.sum(accept)) * thin
    report('trace', min(start + per_call, num_kept), positions=jnp.concatenate(trace))
  accept = accepted / (burn + thin * num_kept)
  trace = jnp.concatenate(trace)
  trace = jnp.swapaxes(trace, 0, 1)  # [C, kept, d]
  energies = jax.vmap(energy_fn)(trace)  # [C, kept]
  rhat = lambda x: blackjax.diagnostics.potential_scale_reduction(x, chain_axis=0, sample_axis=1)
  ess = lambda x: blackjax.diagnostics.effective_sample_size(x, chain_axis=0, sample_axis=1)
  diagnostics = {
      'rhat_energy': float(rhat(energies)), 'ess_energy': float(ess(energies)),
      'rhat_max_coordinate': float(jnp.max(rhat(trace))),
      'ess_min_coordinate': float(jnp.min(ess(trace))),
      'acceptance': float(accept), 'steps': int(num_steps), 'step_size': float(step_size),
      'kept_per_chain': int(num_kept)}
  return state.position, diagnostics


def _forward(energy_fn: EnergyFn, dim: int, keys, settings: 'Settings', step_sizes=None,
             progress: Optional[Progress] = None):
  """The forward run from N(0, I), `keys` = (pilot tuning, start, annealing): (log weights [C],
  final z [C, d], step sizes [K], temperatures [K + 1], acceptance rates [K]); with
  `settings.forward_smc`, tempered SMC's log Z^ instead of the log weights, and its final
  particles resampled by their weights."""
  if step_sizes is None:
    step_sizes = tune_step_sizes(energy_fn, dim, keys[0], settings.num_temperatures,
                                 settings.pilot_chains, settings.steps_per_temperature,
                                 progress=progress)
  step_sizes = jnp.asarray(step_sizes, jnp.float32)
  temps = jnp.asarray(sigmoid_schedule(settings.num_temperatures), jnp.float32)
  z0 = jax.random.normal(keys[1], (settings.num_chains, dim))
  if settings.forward_smc:
    # The SMC step moves under the temperature it leaves (t_k), whose pilot step size is
    # step_sizes[k - 1] (step_sizes[k] belongs to t_{k+1}); t_0's is t_1's.
    moves = jnp.concatenate([step_sizes[:1], step_sizes[:-1]])
    log_z, z_end, accept = _smc(energy_fn, z0, temps, moves, keys[2],
                                settings.steps_per_temperature, progress=progress)
    return log_z, z_end, step_sizes, temps, accept
  log_w, z_end, _, accept = _anneal(energy_fn, z0, temps, step_sizes, keys[2],
                                    settings.steps_per_temperature, False, progress=progress,
                                    stage='forward')
  return log_w, z_end, step_sizes, temps, accept


def forward_chains(energy_fn: EnergyFn, dim: int, key: Array, num_temperatures: int,
                   num_chains: int = 256):
  """The forward run alone, with its own pilot-tuned step sizes: (log weights [C], final z [C, d]).
  log-mean-exp of the weights is the lower bound; the final states show where the chains that
  carry it went."""
  settings = Settings(num_chains=num_chains, num_temperatures=num_temperatures)
  log_w, z_end, _, _, _ = _forward(energy_fn, dim, jax.random.split(key, 3), settings)
  return log_w, z_end


@dataclasses.dataclass
class Settings:
  """The protocol of `log_z_bounds` (recorded beside its result)."""
  num_chains: int = 256
  num_temperatures: int = 1000
  steps_per_temperature: int = 1
  pilot_chains: int = 64
  sampler_steps: int = 2000  # MALA steps on p before the reverse run
  sampler_kept: int = 100
  # 1: the forward run is tempered SMC (`_smc`: the same schedule and MALA moves, the particles
  # resampled at every temperature), and the reverse run starts from its final particles.
  forward_smc: int = 0

  def check(self) -> None:
    for key, value in dataclasses.asdict(self).items():
      config_lib.check_integer(value, f'AIS setting {key}', 0 if key == 'forward_smc' else 1)
    if self.forward_smc not in (0, 1):
      raise ValueError(f'AIS setting forward_smc must be 0 or 1, got {self.forward_smc!r}.')
    if self.num_chains < 2:
      raise ValueError(f'AIS needs num_chains >= 2 (R-hat compares chains), got {self.num_chains}.')
    if self.sampler_steps < 2 * self.sampler_kept:
      raise ValueError(f'AIS sampler_steps ({self.sampler_steps}) must be at least 2 x '
                       f'sampler_kept ({self.sampler_kept}).')


def log_z_bounds(energy_fn: EnergyFn, dim: int, key: Array,
                 settings: Optional[Settings] = None,
                 step_sizes: Optional[np.ndarray] = None, partial_file: Optional[str] = None,
                 protocol: Optional[Dict] = None, remove_when_done: bool = True) -> Dict:
  """Stochastic lower and upper bounds on log Z of f(z) = N(z; 0, I) exp(-E(z)), z in R^dim.

  energy_fn: E, jax-traceable, [C, d] -> [C] (chains independent). Returns {'log_z_lower',
  'log_z_lower_stderr', 'log_z_upper', 'log_z_upper_stderr', 'gap' (upper - lower),
  'log_z_lower_mean', 'log_z_upper_mean' (the chains' mean log weights: looser bounds, less
  noisy), 'settings', 'sampler' (R-hat,
  ESS, acceptance of the chains the reverse run starts from), 'acceptance_forward',
  'acceptance_reverse' (mean over temperatures), 'energy_gradients' (per chain), 'seconds'}.
  With `settings.forward_smc`, 'log_z_lower' is tempered SMC's log Z^, and its stderr and mean are
  NaN (one run has no spread over chains).

  partial_file: where the run's progress is kept (`Progress`: every 30 s and on a signal), with
  `protocol` (what the energy is: e.g. the checkpoint's step) beside the settings and the key; the
  same call after a stop goes on from it and returns the same bounds ('seconds' aside). The file is
  removed at the end, or with `remove_when_done=False` kept whole (`Progress.finish`).
  """
  settings = settings or Settings()
  settings.check()
  start = time.time()
  progress = Progress(partial_file, dict(
      protocol or {}, settings=dataclasses.asdict(settings), dim=dim,
      key=np.asarray(jax.random.key_data(key)).tolist(),
      step_sizes=None if step_sizes is None else np.asarray(step_sizes, np.float64).tolist()))
  try:
    keys = jax.random.split(key, 5)
    log_w, z_end, step_sizes, temps, accept_forward = _forward(energy_fn, dim, keys[:3], settings,
                                                               step_sizes, progress)
    # The reverse run starts from (approximately) exact samples of p: MALA chains from the forward
    # chains' ends (SMC's: its particles resampled), at the step size of the last temperature.
    z_target, sampler = sample_target(energy_fn, z_end, keys[3], settings.sampler_steps,
                                      float(step_sizes[-1]), settings.sampler_kept,
                                      progress=progress)
    # step_sizes[k] belongs to temperature t_{k+1}; going down, the transitions are at t_{K-1},
    # ..., t_0 (t_0: N(0, I), given t_1's).
    reverse_sizes = jnp.concatenate([step_sizes[:-1][::-1], step_sizes[:1]])
    log_w_rev, _, _, accept_reverse = _anneal(energy_fn, z_target, temps[::-1], reverse_sizes,
                                              keys[4], settings.steps_per_temperature, False,
                                              progress=progress, stage='reverse')
  except interrupts.Interrupted:
    progress.save()
    raise
  progress.finish(remove_when_done)
  if settings.forward_smc:  # One estimate of Z: no spread over chains, no mean log weight.
    lower, lower_se, lower_mean = log_w, float('nan'), float('nan')
  else:
    lower, lower_se = _log_mean_exp(log_w)
    lower_mean = float(np.mean(np.asarray(log_w, np.float64)))
  inverse, upper_se = _log_mean_exp(log_w_rev)
  upper = -inverse
  per_temperature = settings.steps_per_temperature + 1  # the weight's gradient, then the steps
  return {
      'log_z_lower': lower, 'log_z_lower_stderr': lower_se,
      'log_z_upper': upper, 'log_z_upper_stderr': upper_se, 'gap': upper - lower,
      # Looser bounds with less noise: E[log w] <= log Z <= -E[log w_rev] (Jensen), each the mean
      # over chains; they close as the temperatures multiply.
      'log_z_lower_mean': lower_mean,
      'log_z_upper_mean': float(-np.mean(np.asarray(log_w_rev, np.float64))),
      'settings': dataclasses.asdict(settings), 'sampler': sampler,
      'acceptance_forward': float(jnp.mean(accept_forward)),
      'acceptance_reverse': float(jnp.mean(accept_reverse)),
      'energy_gradients': int(2 * settings.num_temperatures * per_temperature
                              + settings.sampler_steps),
      'seconds': time.time() - start}
