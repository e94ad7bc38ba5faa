"""Training: the loop with checkpoints, metrics, early stopping and auto-resume, for any method.

What trains, on which loss and in which phases is the run's method (`methods`, `train.method`); the
loop only runs it. The train state is a dict {'params', 'opt_state', 'step'} (and 'model_state' for
models with non-trainable variables; see `methods.base`). Each step runs under `jax.jit` over a 1-D
('data',) mesh of all devices: the state is replicated, the batch is sharded along its first axis.
Step s uses the key fold_in(train_key, s), and its batch is a function of (seed, s) (see `data`), so
a resumed run repeats an uninterrupted one exactly.

The joint-training step of the papers' protocol is also available alone, for your own loop:
`methods.joint.make_optimizer`, `create_train_state` and `make_train_step`.
"""

import functools
import glob
import json
import os
import signal
import threading
import time
from typing import Any, Callable, Dict, Tuple

from absl import logging
import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.experimental import multihost_utils
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from jax.sharding import Mesh

from vaeprior_jax import checkpoints
from vaeprior_jax import compiled
from vaeprior_jax import config as config_lib
from vaeprior_jax import data
from vaeprior_jax import interrupts
from vaeprior_jax.evaluation import estimators
from vaeprior_jax import likelihoods
from vaeprior_jax import methods
from vaeprior_jax import models
from vaeprior_jax import sharding
from vaeprior_jax.train import device_loop
from vaeprior_jax.train import metric_writer
State = Dict[str, Any]


def quiet_library_logs():
  """Keeps the binaries' INFO output to our own progress lines: drops orbax's INFO records, and
  JAX's note that it found no TPU (every CPU-only run probes for one)."""
  import logging as std_logging  # pylint: disable=g-import-not-at-top

  class _DropLibraryInfo(std_logging.Filter):

    def filter(self, record):
      if record.levelno >= std_logging.WARNING:
        return True
      if 'orbax' in record.pathname:
        return False
      return not ('xla_bridge' in record.pathname
                  and 'Unable to initialize backend' in record.getMessage())

  logging.get_absl_handler().addFilter(_DropLibraryInfo())


def abstract_train_state(model, config, input_shape, placement=None) -> State:
  """Shapes and dtypes of the train state of `config` (its model and method), without computing it
  (to restore into), each with the sharding `placement` if given."""
  batch = jax.ShapeDtypeStruct((2,) + tuple(input_shape), jnp.float32)
  config = config_lib.complete(config)
  method = methods.from_config(config, 1)

  def create(b):
    variables = models.init_variables(model, b, checkpoints.root_keys(config.seed)['init'])
    return methods.state_from_variables(method, variables)

  return checkpoints.abstract_tree(jax.eval_shape(create, batch), placement)


# ------------------------------------------------------------------- the joint step, for your own loop

def create_train_state(model: nn.Module, optimizer: optax.GradientTransformation,
                       init_batch: jax.Array, key: jax.Array) -> State:
  """The joint-training state at step 0: parameters initialised on a data batch (ActNorm's
  data-dependent init) and `optimizer`'s state."""
  method = methods.joint.Joint.for_train_config({}, 1, optimizer)  # Only its optimizer is used.
  return methods.state_from_variables(method, models.init_variables(model, init_batch, key))


def make_train_step(model: nn.Module, optimizer: optax.GradientTransformation, train_config,
                    steps_per_epoch: int) -> Callable[[State, jax.Array, jax.Array],
                                                      Tuple[State, Dict[str, jax.Array]]]:
  """(state, batch, train_key) -> (state, metrics); one z sample per example, warm-up ELBO + L2 (the
  `joint` method's step)."""
  method = methods.joint.Joint.for_train_config(train_config, steps_per_epoch, optimizer)
  return methods.make_step(model, method, ('all',))


def init_opt_state(train_config, params, steps_per_epoch: int = 1):
  """The optimizer states of the run's method for `params`, {group: state}."""
  config = config_lib.complete({'train': train_config})
  method = methods.from_config(config, steps_per_epoch)
  return methods.state_from_variables(method, {'params': params})['opt_state']


def _pseudo_inputs_from_data(state: State, train_images, config, mesh) -> State:
  """`state` with the VampPrior's pseudo-inputs set to K random training images (seeded)."""
  return dict(state, params=methods.joint.pseudo_inputs_from_data(state['params'], train_images,
                                                                   config, mesh))


# ------------------------------------------------------------------------------------------- loop

def next_event(step: int, num_steps: int, train_config, early_stopping=None, phase_end=None,
               host_every: int = 0) -> int:
  """The first step after `step` at which the host logs, checkpoints, validates, changes phase or
  updates the state (`Method.host_update`, every `host_every` steps)."""
  after = lambda every: (step // every + 1) * every
  ends = [num_steps, after(train_config.checkpoint_every_steps), after(train_config.log_every_steps)]
  if host_every:
    ends.append(after(host_every))
  if early_stopping is not None:
    ends.append(after(early_stopping.every))
  if phase_end is not None:
    ends.append(phase_end)
  return min(e for e in ends if e > step)


def compile_train_step(train_step, mesh: Mesh):
  repl = sharding.replicated(mesh)
  return compiled.jit(train_step, compiled.mesh_platform(mesh),
                         in_shardings=(repl, sharding.batch_sharded(mesh), repl),
                         out_shardings=(repl, repl), donate_argnums=(0,))


# ------------------------------------------------------------------------------------------- loop

class _Feed:
  """Where the training batches come from: the host's input pipeline (one compiled step per call),
  or, with `train.on_device`, the training split on every device (chunks of steps in one compiled
  loop, up to the next step at which the host has something to do, or `train.device_chunk_steps`
  steps, whichever comes first: the loop looks for a signal only between chunks)."""

  def __init__(self, config, dataset, mesh):
    tc = config.train
    self._config, self._dataset, self._mesh = config, dataset, mesh
    self.on_device = bool(tc.on_device)
    if self.on_device:
      self._device_data = device_loop.DeviceData(dataset.train, tc.batch_size, config.seed,
                                                 dataset.dynamic, mesh)
      self.first_batch = self._device_data.batch_at(0)
    else:
      self.first_batch = next(data.train_batches(dataset.train, tc.batch_size, config.seed, 0,
                                                 dataset.dynamic))

  def runner(self, model, method, phases, num_steps: int, start_step: int, train_key,
             early_stopping, host_every: int = 0):
    """run(state, step) -> (state, metrics, the step reached). On the devices: one compiled loop
    per phase (`methods.make_phase_step`); from the host: one compiled step per phase and group
    tuple (`methods.phase_steps`)."""
    tc, mesh = self._config.train, self._mesh
    if self.on_device:
      loops = {p.key: device_loop.make_loop(methods.make_phase_step(model, method, p),
                                            self._device_data) for p in phases}

      previous = []

      def run(state, step):
        phase = methods.phase_of(phases, step)
        end = next_event(step, num_steps, tc, early_stopping, phase.end, host_every)
        # Capped, not aligned to multiples of the cap: an event gap of g steps runs as chunks of the
        # cap and one of g mod cap, so the loop compiles for few distinct lengths.
        end = min(end, step + tc.device_chunk_steps)
        state, metrics = loops[phase.key](state, train_key, end - step)
        # Dispatch is asynchronous: unchecked, the host would queue every chunk up to the next log
        # step, and a signal would wait for all of them. Waiting for the chunk before this one keeps
        # the devices busy with at most two chunks queued.
        if previous:
          jax.block_until_ready(previous.pop())
        previous.append(metrics)
        return state, metrics, end

      return run
    steps = {(p.key, g): compile_train_step(f, mesh)
             for p in phases for g, f in methods.phase_steps(model, method, p).items()}
    batches = data.train_batches(self._dataset.train, tc.batch_size, self._config.seed, start_step,
                                 self._dataset.dynamic, rows=sharding.process_slice(tc.batch_size))

    def run(state, step):
      phase = methods.phase_of(phases, step)
      state, metrics = steps[phase.key, phase.groups_at(step)](
          state, sharding.shard_batch(next(batches), mesh), train_key)
      return state, metrics, step + 1

    return run

  def per_step(self, pending) -> list:
    """The metrics of each step since the last host event, fetched to the host (on the device,
    each call's metrics have a leading axis over its steps)."""
    host = sharding.to_host(pending)
    if self.on_device:
      host = [{k: v[i] for k, v in chunk.items()} for chunk in host
              for i in range(len(chunk['loss']))]
    return host


def _check_finite(per_step, done: int, manager, workdir: str):
  """Raises FloatingPointError at the first non-finite loss among the steps ending at `done`.

  The loss of step s is that of the state saved as step s, so the good checkpoints are those before
  the bad step; one saved at the bad step itself (checkpoints every step) is named as the state
  that gave the non-finite loss, not as a good one."""
  for offset, m in enumerate(per_step):
    if not np.isfinite(m['loss']):
      bad = done - len(per_step) + offset
      good = [s for s in manager.all_steps() if s < bad]
      where = (f'the last good checkpoint (step {max(good)}) is kept in {workdir}/checkpoints'
               if good else f'no checkpoint before it was saved in {workdir}/checkpoints')
      if bad in manager.all_steps():
        where += (f'; the checkpoint of step {bad} holds the state that gave this loss: move it '
                  'out of the folder to resume from the one before')
      raise FloatingPointError(f'Non-finite loss {m["loss"]} at step {bad}. Training stopped; '
                               f'{where}.')


def _window_means(window) -> Dict[str, float]:
  """Each metric's mean over the steps of the window that computed it: a phase that alternates
  between groups reports NaN for the metrics of the groups a step did not train, and steps of
  different phases report different metrics. 'loss' is kept as it is (NaN included): every step
  computes it."""
  out = {}
  for k in dict.fromkeys(k for m in window for k in m):
    values = np.asarray([m[k] for m in window if k in m], np.float64)
    computed = values if k == 'loss' else values[~np.isnan(values)]
    if computed.size:
      out[k] = float(np.mean(computed))
  return out


def _log_line(done: int, num_steps: int, last, phase_name: str, per_epoch: int, log_fields):
  """The progress line: the method's `log_fields` it reported, the speed and the ETA."""
  phase = f' [{phase_name}]' if phase_name else ''
  fields = ' '.join(f'{label} {fmt % last[key]}' for key, label, fmt in log_fields if key in last)
  logging.info('step %d/%d%s (epoch %.1f) %s | %.1f steps/s, ETA %s', done, num_steps, phase,
               done / per_epoch, fields, last['steps_per_sec'],
               metric_writer.format_duration(
                   (num_steps - done) / max(last['steps_per_sec'], 1e-9)))


class Preempted(Exception):
  """Training stopped on SIGTERM or SIGINT after saving the state of `step`; rerun to resume."""

  def __init__(self, signal_name: str, step: int, workdir: str):
    super().__init__(f'{signal_name}: stopped after step {step} with its checkpoint saved in '
                     f'{workdir}/checkpoints; rerun the same command to resume from it.')
    self.signal_name, self.step = signal_name, step
    self.exit_code = 128 + int(signal.Signals[signal_name])


class _TimedSaves:
  """`train.checkpoint_every_seconds` > 0: a checkpoint at the first log step after that many seconds
  without one, whatever `checkpoint_every_steps` says, so that a run killed without warning
  (SIGKILL, a lost machine: no SIGTERM to save on) loses at most about that much training. The
  choice is made only at log steps, which every process reaches together; with several processes,
  process 0's clock decides for all (a save is a collective). 0 turns it off. Where a run saves
  changes nothing it computes: a resumed run repeats the uninterrupted one from any step."""

  clock = staticmethod(time.monotonic)

  def __init__(self, every_seconds: float):
    self.every_seconds = float(every_seconds)
    self.saved()

  def saved(self) -> None:
    self._last = self.clock()

  def due(self) -> bool:
    if self.every_seconds <= 0:
      return False
    due = self.clock() - self._last >= self.every_seconds
    if jax.process_count() > 1:
      due = bool(multihost_utils.broadcast_one_to_all(np.asarray(due)))
    return due


class _StopRequests:
  """While training: SIGTERM (what a preemption sends) and SIGINT ask the loop to finish the current
  step (or on-device chunk), save a checkpoint, wait for it and raise `Preempted`. `poll`, called
  once per loop iteration, returns the signal's name when this iteration must be the last.

  One process: the signals only set `requested`. Several processes (`jax.distributed`): a host that
  stopped alone would leave the others waiting in their next collective, so every host must stop
  after the same step. JAX's preemption service (on by default, `jax_enable_preemption_service`)
  does that: its own SIGTERM handler tells the coordinator, and
  `multihost_utils.reached_preemption_sync_point` turns true on every host at the same iteration
  (one past the furthest any host had reached). Here SIGTERM is therefore left to JAX, and SIGINT
  is passed on to it as a SIGTERM. Handlers are installed only in the main thread; the previous
  ones come back on `close`."""

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.requested = ''
    interrupts.clear()
    self._previous = {}
    self._iteration = 0
    self._synced = False
    if jax.process_count() > 1:
      try:
        multihost_utils.reached_preemption_sync_point(self._iteration)  # Iteration 0: the start.
        self._synced = True
      except RuntimeError:
        logging.warning('JAX\'s preemption service is off (jax_enable_preemption_service=False): '
                        'a SIGTERM or SIGINT stops only the process that receives it, and the '
                        'others then wait in their next collective.')
    if threading.current_thread() is threading.main_thread():
      for sig in (signal.SIGINT,) if self._synced else self.SIGNALS:
        self._previous[sig] = signal.signal(sig, self._handle)

  def _handle(self, signum, frame):
    del frame
    self.requested = signal.Signals(signum).name
    if self._synced:  # To JAX's preemption notifier, which tells the other processes.
      os.kill(os.getpid(), signal.SIGTERM)
    else:  # Host phases (validation, host updates) stop between their compiled calls.
      interrupts.request(self.requested)

  def poll(self) -> str:
    """The name of the signal that stops training after this iteration, or ''. With several
    processes, every process must call this exactly once per loop iteration."""
    if not self._synced:
      return self.requested
    self._iteration += 1
    if multihost_utils.reached_preemption_sync_point(self._iteration):
      return self.requested or 'SIGTERM'
    return ''

  def close(self):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    interrupts.clear()


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> Dict[str, float]:
  """Trains `config` in `workdir` with its method, resuming from its latest checkpoint; returns the
  last logged metrics. On SIGTERM or SIGINT it saves the state after the current step and raises
  `Preempted` (the binary exits with 128 + the signal's number); rerunning resumes from there."""
  config = config_lib.complete(config)
  os.makedirs(workdir, exist_ok=True)
  config_lib.check_types(config)
  models.validate(config.model)  # Fail on a bad name before loading any data.
  methods.validate(config)
  data.validate(config.data)  # An unknown dataset first: the next check reads its spec.
  estimators.check_eval_config(config.eval)
  data.require_binary(config.data, f'model.net={config.model.net}')
  if likelihoods.REGISTRY.info(config.model.likelihood).get('binary_data'):
    data.check_binary_targets(config.data, f'model.likelihood={config.model.likelihood}')
  if config.train.early_stopping:
    data.check_validation_split(config.data, 'train.early_stopping=True')
  mesh = sharding.make_mesh()
  num_devices = mesh.devices.size
  tc = config.train
  if tc.batch_size % num_devices:
    raise ValueError(f'train.batch_size {tc.batch_size} must be divisible by the number of devices '
                     f'({num_devices}).')
  with checkpoints.WorkdirLock(workdir):
    return _train_locked(config, workdir, mesh)


def _train_locked(config, workdir: str, mesh) -> Dict[str, float]:
  """train_and_evaluate, holding the workdir's lock."""
  tc, num_devices = config.train, mesh.devices.size
  checkpoints.check_resume_config(config, workdir)  # Before anything is written there.
  checkpoints.save_config(config, workdir)

  dataset = data.load(config.data)
  model = models.create(config.model, dataset.input_shape)
  per_epoch = data.steps_per_epoch(dataset.train.shape[0], tc.batch_size)
  method = methods.from_config(config, per_epoch)
  method.num_train_examples = int(dataset.train.shape[0])
  method.prepare(workdir, train_and_evaluate)
  phases = method.phases()
  num_steps = methods.base.total_steps(phases)
  keys = checkpoints.root_keys(config.seed)
  feed = _Feed(config, dataset, mesh)

  state, start_step, manager = _restore_or_initialize(config, workdir, model, method, dataset,
                                                      feed.first_batch, keys['init'], mesh)
  num_params = sum(x.size for x in jax.tree.leaves(state['params']))
  logging.info('Model %s/%s/%s, %d parameters, convolutions by %s, %d devices; %s training, %d steps '
               '(%d per epoch).', config.model.net, config.model.prior, config.model.posterior,
               num_params, config.model.conv_backend, num_devices,
               methods.method_name(tc), num_steps, per_epoch)
  if len(phases) > 1:
    logging.info('Phases: %s.', method.describe())
  # Host work a stopped run left undone at the step of its checkpoint: done first, as it was due.
  undone = checkpoints.read_pending_host_work(workdir, start_step) if start_step else {}
  undone = {k: v for k, v in undone.items() if v and (k != 'validate' or tc.early_stopping)}
  if start_step >= num_steps and not undone:
    logging.info('Nothing to do: the latest checkpoint is at step %d >= %d.', start_step, num_steps)
    manager.close()
    return {}

  writer = metric_writer.MetricWriter(workdir, resume_from_step=start_step)
  train_key = sharding.replicate(method.train_key(keys['train']), mesh)
  early_stopping = EarlyStopping(config, workdir, model, per_epoch, mesh, dataset,
                                 keys['eval']) if tc.early_stopping else None
  host_every = method.host_update_every()
  run = feed.runner(model, method, phases, num_steps, start_step, train_key, early_stopping,
                    host_every)

  pending, window, last = [], [], {}
  window_start, window_step = time.time(), start_step
  in_flight = cpu_steps_in_flight(mesh)
  step = start_step
  stops = _StopRequests()
  saves = _TimedSaves(tc.checkpoint_every_seconds)

  def host_phases(done, state, update, validate):
    """(state, whether to stop early, {} or what a signal left undone) after the host update and
    the validation due at step `done`. Both stop between their compiled calls on a signal
    (`interrupts`): the state is then the one before the unfinished phase."""
    stop = False
    try:
      if update:  # Before validation and the checkpoint of this step, which must hold it.
        interrupts.check()
        state, updated = method.host_update(model, state, done, dataset, mesh,
                                            jax.random.fold_in(keys['eval'], done))
        update = False
        if updated:
          writer.write_scalars(done, updated)
          logging.info('step %d: %s', done, ', '.join(f'{k} {v:.4g}' for k, v in updated.items()))
      if validate:  # Before the latest checkpoint: a run resumed from it must not skip this.
        interrupts.check()
        stop = early_stopping.validate(done, state, writer)
    except interrupts.Interrupted as e:
      return state, False, {'update': update, 'validate': validate, 'signal': e.signal_name}
    return state, stop, {}

  try:
    if undone:
      logging.info('Step %d: redoing its %s, which the stopped run left undone.', start_step,
                   ' and '.join(k for k in ('update', 'validate') if undone.get(k)))
      state, stop, again = host_phases(start_step, state, undone.get('update', False),
                                       undone.get('validate', False))
      if again:  # The checkpoint and its record of the undone work still hold.
        raise Preempted(again['signal'], start_step, workdir)
      if undone.get('update') and (stop or start_step >= num_steps):
        # The run ends here: its last checkpoint must hold the updated state, as an uninterrupted
        # run's does.
        manager.delete(start_step)
        save_checkpoint(manager, start_step, state)
      if stop:
        return last
    while step < num_steps:
      state, metrics, done = run(state, step)
      step = done
      pending.append(metrics)
      if in_flight and len(pending) % in_flight == 0:
        jax.block_until_ready(metrics)
      preempted = stops.poll()
      log = done % tc.log_every_steps == 0 or done == num_steps or bool(preempted)
      save = (done % tc.checkpoint_every_steps == 0 or done == num_steps or bool(preempted)
              or (done % tc.log_every_steps == 0 and saves.due()))
      validate = early_stopping is not None and early_stopping.due(done, num_steps)
      update = ((bool(host_every) and done % host_every == 0)
                or (validate and method.host_update_before_validation))
      if not (save or log or validate or update):
        continue
      # Check every step's loss before a checkpoint can hold what followed a non-finite one.
      per_step, pending = feed.per_step(pending), []
      _check_finite(per_step, done, manager, workdir)
      window.extend(per_step)
      state, stop, undone = host_phases(done, state, update, validate)
      if undone:  # A signal stopped them: save this step, and what is left to redo on resume.
        checkpoints.write_pending_host_work(workdir, done, undone['update'], undone['validate'])
        preempted, save, log = undone['signal'], True, True
      save = save or stop
      if log or stop:  # Before the checkpoint: a run killed between the two rewrites this line.
        steps_per_sec = (done - window_step) / max(time.time() - window_start, 1e-9)
        last = _window_means(window)
        last.update(steps_per_sec=steps_per_sec, epoch=done / per_epoch)
        writer.write_scalars(done, last)
        _log_line(done, num_steps, last,
                  methods.phase_of(phases, done - 1).name if len(phases) > 1 else '', per_epoch,
                  method.log_fields)
        window, window_start, window_step = [], time.time(), done
      if save:
        save_checkpoint(manager, done, state)
        saves.saved()
      if preempted:
        manager.wait_until_finished()
        logging.warning('%s: the state of step %d is saved in %s/checkpoints; rerun the same '
                        'command to resume from it.', preempted, done, workdir)
        raise Preempted(preempted, done, workdir)
      if stop:
        break
  finally:
    stops.close()
    manager.wait_until_finished()
    manager.close()
    if early_stopping is not None:
      early_stopping.close()
    writer.close()
  return last


def _restore_or_initialize(config, workdir: str, model, method, dataset, first_batch, init_key,
                           mesh):
  """(train state, its step, the checkpoint manager): the newest checkpoint of `workdir` that
  restores (damaged ones are moved aside), or the method's initial state at step 0."""
  tc = config.train
  replicated = sharding.replicated(mesh)
  try:
    state, start_step, manager = checkpoints.restore_newest_intact(
        lambda: checkpoints.checkpoint_manager(workdir, tc.max_checkpoints_to_keep),
        lambda _: abstract_train_state(model, config, dataset.input_shape, replicated))
  except checkpoints.StructureMismatch as e:
    raise ValueError(
        f'{e} in {workdir}/checkpoints: this config\'s model and method '
        f'({methods.method_name(tc)}) build another train state: a different model or method, or '
        'a run saved before the optimizer states were grouped by method (its parameters can still '
        'be evaluated). Use a new --workdir.') from None
  start_step = start_step or 0
  if start_step:
    logging.info('Resumed from the checkpoint of step %d in %s.', start_step, workdir)
  else:
    _check_no_results_without_checkpoints(workdir, tc.checkpoint_every_steps)
    variables = method.initial_variables(model, first_batch, init_key, dataset.train, mesh)
    state = jax.jit(functools.partial(methods.state_from_variables, method),
                    out_shardings=replicated)(variables)
  return state, start_step, manager


def _check_no_results_without_checkpoints(workdir: str, checkpoint_every_steps: int) -> None:
  """Refuses to train from step 0 in a workdir whose checkpoints are gone (deleted or lost) while an
  earlier run's results show that it had passed its first checkpoint: metrics logged, a best
  checkpoint kept or an evaluation made at a step >= `checkpoint_every_steps`. Starting again would
  silently throw away that run's training and mix the new run's files with its results. A run
  killed before its first checkpoint has none of these, so it still restarts on its own (and
  repeats what it had logged exactly)."""
  found = []
  last = _last_logged_step(os.path.join(workdir, 'metrics.jsonl'))
  if last >= checkpoint_every_steps:
    found.append(f'metrics.jsonl up to step {last}')
  best = os.path.join(workdir, 'best')
  best_steps = [int(d) for d in os.listdir(best) if d.isdigit()] if os.path.isdir(best) else []
  if best_steps and max(best_steps) >= checkpoint_every_steps:
    found.append(f'best/ at step {max(best_steps)}')
  for path in sorted(glob.glob(os.path.join(workdir, 'eval_*.json'))):
    try:
      with open(path) as f:
        step = int(json.load(f).get('step', checkpoint_every_steps))
    except (ValueError, AttributeError, TypeError, OSError):
      step = checkpoint_every_steps  # Unreadable: it still says an evaluation was made.
    if step >= checkpoint_every_steps:
      found.append(os.path.basename(path))
  if found:
    raise ValueError(
        f'{workdir} holds results of an earlier run ({", ".join(found)}) but no checkpoint in '
        f'{workdir}/checkpoints to resume from; training would start again from step 0 beside '
        'them. Restore its checkpoints, move those results away, or use a new --workdir.')


def _last_logged_step(path: str) -> int:
  """The largest step in a metrics.jsonl (0 if there is none); lines that do not parse are skipped
  here (the metric writer reports them)."""
  last = 0
  if os.path.exists(path):
    with open(path) as f:
      for line in f:
        try:
          last = max(last, int(json.loads(line).get('step', 0)))
        except (ValueError, AttributeError, TypeError):
          continue
  return last


class CheckpointSaveError(RuntimeError):
  """A checkpoint could not be written (disk full, permissions): training stops at once."""


def save_checkpoint(manager, step: int, state) -> None:
  """Saves `state` as the checkpoint of `step` and waits until it is on disk, so that a failure
  (disk full) stops training at once with one line, the earlier checkpoints intact, instead of
  surfacing steps later. (The wait is the write of one checkpoint per `checkpoint_every_steps`.)"""
  try:
    manager.save(step, args=ocp.args.StandardSave(state))
    manager.wait_until_finished()
  except Exception as e:  # pylint: disable=broad-except
    cause = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
    raise CheckpointSaveError(f'Saving the checkpoint of step {step} in {manager.directory} '
                              f'failed ({type(e).__name__}: {cause}); training stopped, the earlier '
                              'checkpoints are intact.') from e


# On several CPU devices, XLA:CPU's collectives wait at most 40 s for every device to reach them
# ("Termination timeout"); a host that dispatches hundreds of sharded steps ahead (a log interval)
# lets one device's queue fall that far behind, and the run aborts. The loop waits for the step
# before it every this many steps there; accelerators keep dispatching fully asynchronously.
CPU_MAX_STEPS_IN_FLIGHT = 16


def cpu_steps_in_flight(mesh) -> int:
  """How many train steps the loop may dispatch ahead of the devices: CPU_MAX_STEPS_IN_FLIGHT on a
  mesh of several CPU devices, 0 (no bound) elsewhere."""
  devices = mesh.devices.flat
  if mesh.devices.size > 1 and all(d.platform == 'cpu' for d in devices):
    return CPU_MAX_STEPS_IN_FLIGHT
  return 0


EARLY_STOPPING_METRICS = ('nll', 'elbo')


class EarlyStopping:
  """Validation every `train.eval_every_epochs`; keeps the best state in workdir/best.

  The criterion (`train.early_stopping_metric`) is the importance-weighted NLL with
  `train.early_stopping_num_samples` samples ('nll'; Xu et al.: 100 samples every 20 epochs) or the
  negative ELBO averaged over as many samples ('elbo'; Tomczak & Welling: one sample, every epoch), on
  the whole validation split (binarized anew for each evaluation where it holds grey levels). With
  `train.early_stopping_patience_epochs` > 0, training stops once that many epochs have passed without
  a new best, counted from the end of the KL warm-up at the earliest (the warm-up ELBO is not the
  validation objective; Tomczak & Welling's look-ahead also restarts during warm-up). The best value is
  read back from the checkpoint's metrics, so a resumed run decides exactly as an uninterrupted one.
  """

  def __init__(self, config, workdir, model, steps_per_epoch, mesh, dataset, eval_key):
    tc = config.train
    self._metric = tc.early_stopping_metric
    if self._metric not in EARLY_STOPPING_METRICS:
      raise ValueError(f'Unknown train.early_stopping_metric {self._metric!r}; allowed: '
                       f'{", ".join(EARLY_STOPPING_METRICS)}.')
    self.every = max(1, int(round(tc.eval_every_epochs * steps_per_epoch)))
    self._patience = int(round(tc.early_stopping_patience_epochs * steps_per_epoch))
    self._warmup_end = int(round(tc.warmup_epochs * steps_per_epoch))
    self._model, self._num_samples = model, tc.early_stopping_num_samples
    self._chunk_size, self._budget_gb = config.eval.chunk_size, config.eval.memory_budget_gb
    self._batch_metrics = None  # Bounded by the memory budget at the first validation.
    self._batch_size = sharding.round_up_to_devices(config.eval.batch_size, mesh)
    self._mesh, self._dataset = mesh, dataset
    self._key = jax.random.fold_in(eval_key, 0x7a11d)
    self._manager = checkpoints.best_checkpoint_manager(workdir)
    self.best_step = self._manager.best_step()
    self.best_loss = (float(checkpoints.validation_loss(self._manager.metrics(self.best_step)))
                      if self.best_step is not None else float('inf'))

  def due(self, step: int, num_steps: int) -> bool:
    return step % self.every == 0 or step == num_steps

  def validate(self, step: int, state: State, writer) -> bool:
    """Evaluates the state of `step`, saves it if best; returns whether to stop."""
    images = self._dataset.eval_images('validation', seed=step)
    variables = methods.model_variables(state)
    if self._batch_metrics is None:
      self._batch_metrics = estimators.bounded_batch_metrics(
          self._model, self._num_samples, self._chunk_size, variables,
          (self._batch_size,) + images.shape[1:], self._key, self._mesh, self._budget_gb,
          log_label='Validation')
    m = estimators.split_metrics(self._batch_metrics, variables, images,
                                 jax.random.fold_in(self._key, step), self._mesh, self._batch_size)
    loss = m['nll'] if self._metric == 'nll' else -m['elbo']
    improved = loss < self.best_loss
    if improved and step not in self._manager.all_steps():
      self._manager.save(step, args=ocp.args.StandardSave(state),
                         metrics={'val_loss': loss, 'val_nll': m['nll'], 'val_elbo': m['elbo']})
    if improved:
      self.best_step, self.best_loss = step, loss
    writer.write_scalars(step, {'val_nll': m['nll'], 'val_elbo': m['elbo'], 'val_loss': loss,
                                'best_val_loss': self.best_loss,
                                **({'best_val_nll': self.best_loss} if self._metric == 'nll' else {})})
    logging.info('step %d: validation NLL %.3f, ELBO %.3f (best %s %.3f at step %d)', step, m['nll'],
                 m['elbo'], 'NLL' if self._metric == 'nll' else '-ELBO', self.best_loss,
                 self.best_step)
    since = step - max(self.best_step, self._warmup_end)
    if self._patience > 0 and since >= self._patience:
      logging.info('Early stopping at step %d: no better validation %s since step %d.', step,
                   self._metric.upper(), self.best_step)
      return True
    return False

  def close(self):
    self._manager.wait_until_finished()
    self._manager.close()
