"""Training: the jitted, sharded ELBO step and the loop with checkpoints, metrics and auto-resume.

The train state is a plain dict {'params', 'opt_state', 'step'}. The step runs under `jax.jit` over a
1-D ('data',) mesh of all devices: the state is replicated, the batch is sharded along its first axis.
Step s uses the key fold_in(train_key, s), and its batch is a function of (seed, s) (see `data`), so a
resumed run repeats an uninterrupted one exactly.
"""

import json
import math
import os
import time
from typing import Any, Callable, Dict, Tuple

from absl import logging
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from jax.sharding import Mesh

from vaeprior_jax import data
from vaeprior_jax import device_loop
from vaeprior_jax import evaluation
from vaeprior_jax import metric_writer
from vaeprior_jax import models
from vaeprior_jax import objectives
from vaeprior_jax import prior_training
from vaeprior_jax import priors
from vaeprior_jax import sharding
from vaeprior_jax import xla_options

State = Dict[str, Any]


# ----------------------------------------------------------------------------------------- schedules

def beta_schedule(train_config, steps_per_epoch: int) -> Callable[[jax.Array], jax.Array]:
  """KL warm-up: beta rises linearly from beta_start to 1 over warmup_epochs, then stays at 1."""
  beta_start = train_config.get('beta_start', 0.01)
  warmup_steps = train_config.warmup_epochs * steps_per_epoch
  if warmup_steps <= 0:
    return lambda step: jnp.ones((), jnp.float32)
  return lambda step: jnp.minimum(
      1.0, beta_start + (1.0 - beta_start) * step.astype(jnp.float32) / warmup_steps)


def learning_rate_schedule(train_config, steps_per_epoch: int) -> optax.Schedule:
  """Piecewise constant: learning_rate, multiplied by lr_decay_factor at each of lr_decay_epochs."""
  boundaries = {int(round(e * steps_per_epoch)): train_config.lr_decay_factor
                for e in train_config.lr_decay_epochs}
  return optax.piecewise_constant_schedule(train_config.learning_rate, boundaries)


l2_penalty = objectives.l2_penalty


def quiet_library_logs():
  """Keeps the binaries' INFO output to our own progress lines: drops orbax's INFO records."""
  import logging as std_logging  # pylint: disable=g-import-not-at-top

  class _DropOrbaxInfo(std_logging.Filter):

    def filter(self, record):
      return record.levelno >= std_logging.WARNING or 'orbax' not in record.pathname

  logging.get_absl_handler().addFilter(_DropOrbaxInfo())


# ------------------------------------------------------------------------------------- state, mesh

def root_keys(seed: int) -> Dict[str, jax.Array]:
  init, train, evaluation = jax.random.split(jax.random.key(seed), 3)
  return {'init': init, 'train': train, 'eval': evaluation}


def create_train_state(model: nn.Module, optimizer: optax.GradientTransformation,
                       init_batch: jax.Array, key: jax.Array) -> State:
  """Initialises the parameters from a data batch (ActNorm's data-dependent init) and Adam."""
  param_key, sample_key = jax.random.split(key)
  params = model.init({'params': param_key}, init_batch, sample_key, method=model.elbo)['params']
  return {'params': params, 'opt_state': optimizer.init(params), 'step': jnp.zeros((), jnp.int32)}


def normalize_per_tensor(eps: float = 1e-7) -> optax.GradientTransformation:
  """Divides each gradient tensor by its L2 norm (+ eps): the "Adam with normalized gradients" of
  Tomczak & Welling's code (AdamNormGrad), applied before Adam's moments."""

  def update_fn(updates, state, params=None):
    del params
    return jax.tree.map(lambda g: g / (jnp.sqrt(jnp.sum(jnp.square(g))) + eps), updates), state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


def make_optimizer(train_config, steps_per_epoch: int) -> optax.GradientTransformation:
  """Adam with the learning-rate schedule; with `train.normalize_gradients`, each gradient tensor is
  first divided by its norm (Tomczak & Welling)."""
  adam = optax.adam(learning_rate_schedule(train_config, steps_per_epoch))
  if train_config.get('normalize_gradients', False):
    return optax.chain(normalize_per_tensor(), adam)
  return adam


def checkpoint_manager(workdir: str, max_to_keep: int = 3) -> ocp.CheckpointManager:
  """The latest checkpoints of a run, in workdir/checkpoints."""
  return ocp.CheckpointManager(
      os.path.join(os.path.abspath(workdir), 'checkpoints'),
      options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))


def _validation_loss(metrics) -> float:
  """The early-stopping criterion saved with a best checkpoint (older runs saved only val_nll)."""
  return metrics['val_loss'] if 'val_loss' in metrics else metrics['val_nll']


def best_checkpoint_manager(workdir: str) -> ocp.CheckpointManager:
  """The state with the lowest validation loss seen so far (early stopping), in workdir/best."""
  return ocp.CheckpointManager(
      os.path.join(os.path.abspath(workdir), 'best'),
      options=ocp.CheckpointManagerOptions(max_to_keep=1, best_fn=_validation_loss,
                                           best_mode='min', create=True))


def restore_state(manager: ocp.CheckpointManager, abstract_state: State, step=None) -> State:
  """Restores `step` (default: the latest) into the shapes, dtypes and shardings of abstract_state
  (jax.ShapeDtypeStructs, see `abstract_train_state`)."""
  step = manager.latest_step() if step is None else step
  return manager.restore(step, args=ocp.args.StandardRestore(abstract_state))


def init_opt_state(train_config, params, steps_per_epoch: int = 1):
  """Adam's state: one for all parameters (joint training), or one per group (post-hoc, iterative)."""
  if prior_training.strategy(train_config) == 'joint':
    return make_optimizer(train_config, steps_per_epoch).init(params)
  return prior_training.init_opt_state(params)


def abstract_train_state(model: nn.Module, config, input_shape, placement=None) -> State:
  """Shapes and dtypes of the train state of `config`, without computing it (to restore into), each
  with the sharding `placement` if given."""
  batch = jax.ShapeDtypeStruct((2,) + tuple(input_shape), jnp.float32)

  def create(b):
    params = model.init({'params': root_keys(config.seed)['init']}, b, jax.random.key(0),
                        method=model.elbo)['params']
    return {'params': params, 'opt_state': init_opt_state(config.train, params),
            'step': jnp.zeros((), jnp.int32)}

  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=placement),
                      jax.eval_shape(create, batch))


CHECKPOINTS = ('auto', 'latest', 'best')


def resolve_checkpoint(workdir: str, checkpoint: str) -> str:
  """'auto' -> 'best' if the run kept a best checkpoint (early stopping), else 'latest'."""
  if checkpoint not in CHECKPOINTS:
    raise ValueError(f'Unknown checkpoint {checkpoint!r}; allowed: {", ".join(CHECKPOINTS)}.')
  if checkpoint == 'auto':
    return 'best' if os.path.isdir(os.path.join(workdir, 'best')) else 'latest'
  return checkpoint


def restore_params(workdir: str, config, model, input_shape, checkpoint: str = 'latest'):
  """The parameters of a checkpoint of `workdir`, replicated over all devices; and its step.

  checkpoint: 'latest', 'best' (lowest validation NLL, with early stopping), or 'auto' (best if the
  run kept one, else latest).
  """
  checkpoint = resolve_checkpoint(workdir, checkpoint)
  if checkpoint == 'best':
    manager = best_checkpoint_manager(workdir)
    step = manager.best_step()
  else:
    manager = checkpoint_manager(workdir)
    step = manager.latest_step()
  if step is None:
    manager.close()
    raise FileNotFoundError(f'No {checkpoint} checkpoint in {workdir}: train first '
                            f'(python -m experiments.train --workdir={workdir} ...).')
  abstract = abstract_train_state(model, config, input_shape,
                                  sharding.replicated(sharding.make_mesh()))
  state = restore_state(manager, abstract, step)
  manager.close()
  return state['params'], step


def save_config(config: ml_collections.ConfigDict, workdir: str):
  if jax.process_index() == 0:
    with open(os.path.join(workdir, 'config.json'), 'w') as f:
      f.write(config.to_json(indent=2))


def load_config(workdir: str) -> ml_collections.ConfigDict:
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    raise FileNotFoundError(f'No config.json in workdir {workdir!r}: it is not a training workdir.')
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def num_train_steps(train_config, steps_per_epoch: int) -> int:
  if train_config.num_steps > 0:
    return int(train_config.num_steps)
  return int(math.ceil(train_config.num_epochs * steps_per_epoch))


# ------------------------------------------------------------------------------------------- step

def make_train_step(model: nn.Module, optimizer: optax.GradientTransformation, train_config,
                    steps_per_epoch: int) -> Callable[[State, jax.Array, jax.Array],
                                                      Tuple[State, Dict[str, jax.Array]]]:
  """(state, batch, train_key) -> (state, metrics); one z sample per example, warm-up ELBO + L2."""
  beta_fn = beta_schedule(train_config, steps_per_epoch)
  lr_fn = learning_rate_schedule(train_config, steps_per_epoch)
  l2_weight = train_config.l2_reg
  use_reg = bool(train_config.get('qz_regularizer', False))

  def train_step(state, batch, train_key):
    step = state['step']
    rng = jax.random.fold_in(train_key, step)
    beta = beta_fn(step)

    def loss_fn(params):
      t = model.apply({'params': params}, batch, rng, use_reg, True,
                      method=model.log_weight_terms)
      return objectives.training_loss(t, beta, l2_penalty(params), l2_weight, use_reg)

    grads, metrics = jax.grad(loss_fn, has_aux=True)(state['params'])
    updates, opt_state = optimizer.update(grads, state['opt_state'], state['params'])
    params = optax.apply_updates(state['params'], updates)
    metrics.update(beta=beta, learning_rate=lr_fn(step))
    return {'params': params, 'opt_state': opt_state, 'step': step + 1}, metrics

  return train_step


def next_event(step: int, num_steps: int, train_config, early_stopping=None, phase_end=None) -> int:
  """The first step after `step` at which the host logs, checkpoints, validates or changes phase."""
  after = lambda every: (step // every + 1) * every
  ends = [num_steps, after(train_config.checkpoint_every_steps), after(train_config.log_every_steps)]
  if early_stopping is not None:
    ends.append(after(early_stopping.every))
  if phase_end is not None:
    ends.append(phase_end)
  return min(e for e in ends if e > step)


def compile_train_step(train_step, mesh: Mesh):
  repl = sharding.replicated(mesh)
  return xla_options.jit(train_step, xla_options.mesh_platform(mesh),
                         in_shardings=(repl, sharding.batch_sharded(mesh), repl),
                         out_shardings=(repl, repl), donate_argnums=(0,))


# ------------------------------------------------------------------------------------------- loop

def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> Dict[str, float]:
  """Trains `config` in `workdir`, resuming from its latest checkpoint; returns the last metrics."""
  os.makedirs(workdir, exist_ok=True)
  models.validate(config.model)  # Fail on a bad name before loading any data.
  prior_training.validate(config)
  data.require_binary(config.data, f'model.net={config.model.net}')
  data.validate(config.data)
  mesh = sharding.make_mesh()
  num_devices = mesh.devices.size
  tc = config.train
  if tc.batch_size % num_devices:
    raise ValueError(f'train.batch_size {tc.batch_size} must be divisible by the number of devices '
                     f'({num_devices}).')
  save_config(config, workdir)

  dataset = data.load(config.data)
  model = models.create(config.model, dataset.input_shape)
  per_epoch = data.steps_per_epoch(dataset.train.shape[0], tc.batch_size)
  keys = root_keys(config.seed)
  replicated = sharding.replicated(mesh)
  on_device = bool(tc.get('on_device', False))
  if on_device:  # The training split on every device; chunks of steps in one compiled loop.
    device_data = device_loop.DeviceData(dataset.train, tc.batch_size, config.seed,
                                         dataset.dynamic, mesh)
    first_batch = device_data.batch_at(0)
  else:
    first_batch = next(data.train_batches(dataset.train, tc.batch_size, config.seed, 0,
                                           dataset.dynamic))
  staged = prior_training.strategy(tc) != 'joint'
  if staged:  # Post-hoc or iterative: phases over a pretrained standard VAE.
    init_from = tc.get('init_from') or _pretrain(config, workdir)
    phases = prior_training.plan(tc, per_epoch)
    num_steps = prior_training.total_steps(phases)
    train_key = jax.random.fold_in(keys['train'], 1)
    init_fn = jax.jit(lambda b, k, vp: _staged_state(model, vp, b, k), out_shardings=replicated)
  else:
    num_steps = num_train_steps(tc, per_epoch)
    optimizer = make_optimizer(tc, per_epoch)
    train_key = keys['train']
    init_fn = jax.jit(lambda b, k: create_train_state(model, optimizer, b, k),
                      out_shardings=replicated)

  manager = checkpoint_manager(workdir, tc.get('max_checkpoints_to_keep', 3))
  start_step = manager.latest_step() or 0
  if start_step:
    state = restore_state(manager, abstract_train_state(model, config, dataset.input_shape,
                                                        replicated))
    logging.info('Resumed from the checkpoint of step %d in %s.', start_step, workdir)
  elif staged:
    vae_params = _pretrained_vae_params(config, init_from, dataset.input_shape)
    state = init_fn(first_batch, keys['init'], vae_params)
    logging.info('Starting %s prior training from the standard VAE in %s.', tc.prior_training,
                 init_from)
  else:
    state = init_fn(first_batch, keys['init'])
    if config.model.prior == 'vampprior_data' or config.model.get('pseudo_inputs_from_data', False):
      state = _pseudo_inputs_from_data(state, dataset.train, config, mesh)
  num_params = sum(x.size for x in jax.tree.leaves(state['params']))
  logging.info('Model %s/%s/%s, %d parameters, convolutions by %s, %d devices; %d steps (%d per '
               'epoch).', config.model.net, config.model.prior, config.model.posterior, num_params,
               config.model.get('conv_backend', 'xla'), num_devices, num_steps, per_epoch)
  if staged:
    logging.info('Phases: %s.', prior_training.describe(phases, per_epoch))
  if start_step >= num_steps:
    logging.info('Nothing to do: the latest checkpoint is at step %d >= %d.', start_step, num_steps)
    manager.close()
    return {}

  if staged:
    step_fns = {g: prior_training.make_phase_step(model, g, phases, tc)
                for g in sorted({p.group for p in phases})}
    group_at = lambda step: prior_training.phase_of(phases, step).group
  else:
    step_fns = {'joint': make_train_step(model, optimizer, tc, per_epoch)}
    group_at = lambda step: 'joint'
  writer = metric_writer.MetricWriter(workdir, resume_from_step=start_step)
  train_key = sharding.replicate(train_key, mesh)
  early_stopping = EarlyStopping(config, workdir, model, per_epoch, mesh, dataset,
                                 keys['eval']) if tc.get('early_stopping', False) else None
  if on_device:
    loops = {g: device_loop.make_loop(f, device_data) for g, f in step_fns.items()}

    def run(state, step):  # Up to the next step at which the host has something to do.
      end = next_event(step, num_steps, tc, early_stopping,
                       prior_training.phase_of(phases, step).end if staged else None)
      state, metrics = loops[group_at(step)](state, train_key, end - step)
      return state, metrics, end
  else:
    compiled = {g: compile_train_step(f, mesh) for g, f in step_fns.items()}
    batches = data.train_batches(dataset.train, tc.batch_size, config.seed, start_step,
                                 dataset.dynamic, rows=sharding.process_slice(tc.batch_size))

    def run(state, step):
      state, metrics = compiled[group_at(step)](
          state, sharding.shard_batch(next(batches), mesh), train_key)
      return state, metrics, step + 1

  pending, window, last = [], [], {}
  window_start, window_step = time.time(), start_step
  step = start_step
  try:
    while step < num_steps:
      state, metrics, done = run(state, step)
      step = done
      pending.append(metrics)  # On device: with a leading axis over the chunk's steps.
      save = done % tc.checkpoint_every_steps == 0 or done == num_steps
      log = done % tc.log_every_steps == 0 or done == num_steps
      validate = early_stopping is not None and early_stopping.due(done, num_steps)
      if not (save or log or validate):
        continue
      # Check every step's loss before a checkpoint can hold what followed a non-finite one.
      host = sharding.to_host(pending)
      if on_device:
        host = [{k: v[i] for k, v in chunk.items()} for chunk in host
                for i in range(len(chunk['loss']))]
      pending = []
      for offset, m in enumerate(host):
        if not np.isfinite(m['loss']):
          bad = done - len(host) + offset
          raise FloatingPointError(
              f'Non-finite loss {m["loss"]} at step {bad}. Training stopped; the last good checkpoint '
              f'(step {manager.latest_step()}) is kept in {workdir}/checkpoints.')
      window.extend(host)
      stop = False
      if validate:  # Before the latest checkpoint: a run resumed from it must not skip this.
        stop = early_stopping.validate(done, state, writer)
        save = save or stop
      if save:
        manager.save(done, args=ocp.args.StandardSave(state))
      if log or stop:
        elapsed = time.time() - window_start
        steps_per_sec = (done - window_step) / max(elapsed, 1e-9)
        last = {k: float(np.mean([m[k] for m in window])) for k in window[0]}
        last.update(steps_per_sec=steps_per_sec, epoch=done / per_epoch)
        writer.write_scalars(done, last)
        phase = f' [{prior_training.phase_of(phases, done - 1).name}]' if staged else ''
        logging.info('step %d/%d%s (epoch %.1f) loss %.2f elbo %.2f rec %.2f kl %.2f beta %.3f '
                     'lr %.1e | %.1f steps/s, ETA %s', done, num_steps, phase, done / per_epoch,
                     last['loss'],
                     last['elbo'], last['reconstruction'], last['kl'], last['beta'],
                     last['learning_rate'], steps_per_sec,
                     metric_writer.format_duration((num_steps - done) / max(steps_per_sec, 1e-9)))
        window, window_start, window_step = [], time.time(), done
      if stop:
        break
  finally:
    manager.wait_until_finished()
    manager.close()
    if early_stopping is not None:
      early_stopping.close()
    writer.close()
  return last


def _pseudo_inputs_from_data(state: State, train_images, config, mesh) -> State:
  """The VampPrior's pseudo-inputs set to K random training images (seeded by config.seed)."""
  k = config.model.get('num_components', 500)
  if k > len(train_images):
    raise ValueError(f'model.num_components {k} exceeds the {len(train_images)} training images the '
                     'pseudo-inputs are taken from.')
  rows = np.sort(np.random.default_rng(config.seed).choice(len(train_images), k, replace=False))
  images = sharding.replicate(data.to_float(train_images[rows]), mesh)
  return dict(state, params=priors.set_pseudo_inputs(state['params'], images))


def _pretrain(config, workdir: str) -> str:
  """Iteration 1a: trains (or resumes, or finds trained) the standard VAE in workdir/pretrain."""
  pretrain_config = ml_collections.ConfigDict(config.to_dict())
  pretrain_config.model.prior = 'standard'
  pretrain_config.train.prior_training = 'joint'
  pretrain_dir = os.path.join(workdir, 'pretrain')
  logging.info('Training the standard VAE first (Iteration 1a), in %s.', pretrain_dir)
  train_and_evaluate(pretrain_config, pretrain_dir)
  return pretrain_dir


def _pretrained_vae_params(config, init_from: str, input_shape):
  """The encoder/posterior/decoder parameters of the standard VAE trained in `init_from`."""
  pretrained = load_config(init_from)
  prior_training.check_pretrained_config(config, pretrained)
  pretrained_model = models.create(pretrained.model, input_shape)
  params, step = restore_params(init_from, pretrained, pretrained_model, input_shape, 'auto')
  logging.info('Loaded the standard VAE of %s at step %d.', init_from, step)
  return params


def _staged_state(model, vae_params, batch, key) -> State:
  prior = prior_training.init_prior_params(model, vae_params, batch, key)
  params = prior_training.merge_params(vae_params, prior)
  return {'params': params, 'opt_state': prior_training.init_opt_state(params),
          'step': jnp.zeros((), jnp.int32)}


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
    self._metric = tc.get('early_stopping_metric', 'nll')
    if self._metric not in EARLY_STOPPING_METRICS:
      raise ValueError(f'Unknown train.early_stopping_metric {self._metric!r}; allowed: '
                       f'{", ".join(EARLY_STOPPING_METRICS)}.')
    self.every = max(1, int(round(tc.eval_every_epochs * steps_per_epoch)))
    self._patience = int(round(tc.get('early_stopping_patience_epochs', 0) * steps_per_epoch))
    self._warmup_end = int(round(tc.warmup_epochs * steps_per_epoch))
    self._batch_metrics = evaluation.make_batch_metrics(
        model, tc.early_stopping_num_samples, config.eval.chunk_size)
    self._batch_size = sharding.round_up_to_devices(config.eval.batch_size, mesh)
    self._mesh, self._dataset = mesh, dataset
    self._key = jax.random.fold_in(eval_key, 0x7a11d)
    self._manager = best_checkpoint_manager(workdir)
    self.best_step = self._manager.best_step()
    self.best_loss = (float(_validation_loss(self._manager.metrics(self.best_step)))
                      if self.best_step is not None else float('inf'))

  def due(self, step: int, num_steps: int) -> bool:
    return step % self.every == 0 or step == num_steps

  def validate(self, step: int, state: State, writer) -> bool:
    """Evaluates the state of `step`, saves it if best; returns whether to stop."""
    images = self._dataset.eval_images('validation', seed=step)
    m = evaluation.split_metrics(self._batch_metrics, state['params'], images,
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
