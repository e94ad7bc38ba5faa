"""A run's workdir on disk: its config, its checkpoints (Orbax), and restoring from them.

workdir/config.json     the run's config
workdir/checkpoints/    the latest train states (`checkpoint_manager`)
workdir/best/           the state with the lowest validation loss, with early stopping
"""

import json
import os
from typing import Any, Dict

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from vaeprior_jax import config as config_lib
from vaeprior_jax import files
from vaeprior_jax import models
from vaeprior_jax import sharding

State = Dict[str, Any]
CHECKPOINTS = ('auto', 'latest', 'best')


def root_keys(seed: int) -> Dict[str, jax.Array]:
  init, train, evaluation = jax.random.split(jax.random.key(seed), 3)
  return {'init': init, 'train': train, 'eval': evaluation}


def checkpoint_manager(workdir: str, max_to_keep: int = 3) -> ocp.CheckpointManager:
  """The latest checkpoints of a run, in workdir/checkpoints."""
  return ocp.CheckpointManager(
      os.path.join(os.path.abspath(workdir), 'checkpoints'),
      options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
      item_handlers=ocp.StandardCheckpointHandler())


def validation_loss(metrics) -> float:
  """The early-stopping criterion saved with a best checkpoint (older runs saved only val_nll)."""
  return metrics['val_loss'] if 'val_loss' in metrics else metrics['val_nll']


def best_checkpoint_manager(workdir: str) -> ocp.CheckpointManager:
  """The state with the lowest validation loss seen so far (early stopping), in workdir/best."""
  return ocp.CheckpointManager(
      os.path.join(os.path.abspath(workdir), 'best'),
      options=ocp.CheckpointManagerOptions(max_to_keep=1, best_fn=validation_loss,
                                           best_mode='min', create=True),
      item_handlers=ocp.StandardCheckpointHandler())


def restore_state(manager: ocp.CheckpointManager, abstract_state: State, step=None) -> State:
  """Restores `step` (default: the latest) into the shapes, dtypes and shardings of abstract_state
  (jax.ShapeDtypeStructs, see `train.trainer.abstract_train_state`)."""
  step = manager.latest_step() if step is None else step
  return manager.restore(step, args=ocp.args.StandardRestore(abstract_state))


class StructureMismatch(ValueError):
  """A checkpoint holds another tree of arrays than the one asked for (another model or method)."""


def _tree_paths(tree):
  """The leaves' paths as tuples of strings (a namedtuple's field and a dict's key read the same, as
  Orbax's metadata stores namedtuples as dicts)."""
  def name(k):
    for attr in ('key', 'name', 'idx'):
      if hasattr(k, attr):
        return str(getattr(k, attr))
    return str(k)
  return sorted(tuple(name(k) for k in p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0])


def move_aside(manager_dir: str, step: int, reason: str) -> str:
  """Moves the folder of `step` out of `manager_dir` (a checkpoints folder) into
  `manager_dir`_unreadable/, never deleting it; returns where it went."""
  import time  # pylint: disable=g-import-not-at-top
  from absl import logging  # pylint: disable=g-import-not-at-top
  target_dir = manager_dir.rstrip('/') + '_unreadable'
  os.makedirs(target_dir, exist_ok=True)
  target = os.path.join(target_dir, f'{step}-{int(time.time())}')
  os.replace(os.path.join(manager_dir, str(step)), target)
  logging.warning('The checkpoint of step %d in %s cannot be restored (%s); moved to %s, trying the '
                  'one before it.', step, manager_dir, reason, target)
  return target


def restore_newest_intact(open_manager, abstract_for, best: bool = False):
  """(state, step, manager) of the newest checkpoint that restores, or (None, None, manager) if none.

  open_manager: () -> a CheckpointManager (reopened after a bad step is moved aside);
  abstract_for: (stored metadata tree) -> the abstract state to restore into.
  A checkpoint whose metadata or arrays cannot be read (truncated, overwritten) is moved aside
  (`move_aside`, one line in the log naming the step, the folder and the cause) and the one before
  it is tried. With `best`, the manager's best step must restore as it is (there is no older best to
  fall back to). A checkpoint that reads but holds another tree than `abstract_for` gives raises
  `StructureMismatch`.
  """
  manager = open_manager()
  while True:
    current = manager.best_step() if best else manager.latest_step()
    if current is None:
      return None, None, manager
    try:
      stored = manager.item_metadata(current)
      stored = getattr(stored, 'tree', stored)
      if stored is None:
        raise ValueError('no metadata')
      abstract = abstract_for(stored)
    except Exception as e:  # pylint: disable=broad-except
      error = e
    else:
      if _tree_paths(stored) != _tree_paths(abstract):
        raise StructureMismatch(f'the checkpoint of step {current} holds other arrays than asked '
                                f'for')
      try:
        return restore_state(manager, abstract, current), current, manager
      except Exception as e:  # pylint: disable=broad-except
        error = e
    if best:
      raise ValueError(f'The checkpoint of step {current} in {manager.directory} cannot be '
                       f'restored: {str(error).splitlines()[0][:300]}') from None
    directory = str(manager.directory)
    manager.close()
    move_aside(directory, current, f'{type(error).__name__}: {str(error).splitlines()[0][:200]}')
    manager = open_manager()


def abstract_tree(tree, placement):
  """Shapes and dtypes of `tree`'s leaves, each with the sharding `placement`."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=placement), tree)


def abstract_params(model, input_shape, placement=None):
  """Shapes and dtypes of `model`'s parameters, without computing them."""
  batch = jax.ShapeDtypeStruct((2,) + tuple(input_shape), jnp.float32)
  shapes = jax.eval_shape(lambda b: models.init_variables(model, b, jax.random.key(0))['params'],
                          batch)
  return abstract_tree(shapes, placement)


def resolve_checkpoint(workdir: str, checkpoint: str) -> str:
  """'auto' -> 'best' if the run kept a best checkpoint (early stopping), else 'latest'."""
  if checkpoint not in CHECKPOINTS:
    raise ValueError(f'Unknown checkpoint {checkpoint!r}; allowed: {", ".join(CHECKPOINTS)}.')
  if checkpoint == 'auto':
    return 'best' if os.path.isdir(os.path.join(workdir, 'best')) else 'latest'
  return checkpoint


def restore_variables(workdir: str, config, model, input_shape, checkpoint: str = 'latest'):
  """The model variables of a checkpoint of `workdir` ({'params', ...} with the non-trainable
  collections of its `model_state`, e.g. 'batch_stats'), replicated over all devices; and its step.

  checkpoint: 'latest', 'best' (lowest validation NLL, with early stopping), or 'auto' (best if the
  run kept one, else latest). The parameters must have `model`'s shapes; the rest of the state
  (optimizer states of any method) is read as stored and dropped.
  """
  checkpoint = resolve_checkpoint(workdir, checkpoint)
  best = checkpoint == 'best'
  missing = FileNotFoundError(f'No {checkpoint} checkpoint in {workdir}: train first '
                              f'(python -m experiments.train --workdir={workdir} ...).')
  if not os.path.isdir(os.path.join(workdir, 'best' if best else 'checkpoints')):
    raise missing  # (Opening a manager would create the folder.)
  placement = sharding.replicated(sharding.make_mesh())

  def abstract_for(stored):
    abstract = {k: abstract_tree(v, placement) for k, v in stored.items() if k != 'params'}
    abstract['params'] = abstract_params(model, input_shape, placement)
    return abstract

  open_manager = (lambda: best_checkpoint_manager(workdir)) if best else (
      lambda: checkpoint_manager(workdir))
  try:
    state, step, manager = restore_newest_intact(open_manager, abstract_for, best)
  except StructureMismatch as e:
    raise ValueError(f'{workdir}: {e} (model {config.model.net}/{config.model.prior}): its '
                     'config.json and checkpoints disagree.') from None
  manager.close()
  if state is None:
    raise missing
  return {'params': state['params'], **state.get('model_state', {})}, step


def restore_params(workdir: str, config, model, input_shape, checkpoint: str = 'latest'):
  """The parameters of a checkpoint of `workdir` (see `restore_variables`), and its step. Models
  whose nets keep statistics (batch norm) need `restore_variables`."""
  variables, step = restore_variables(workdir, config, model, input_shape, checkpoint)
  return variables['params'], step


def restore_run(workdir: str, input_shape, checkpoint: str = 'auto', config=None,
                variables: bool = False):
  """(config, parameters, step) of another run's workdir: its model built from its own config
  (`config`, or its config.json), the parameters of `checkpoint` replicated over all devices (with
  `variables`, all its model variables, as `restore_variables`)."""
  config = load_config(workdir) if config is None else config
  input_shape = tuple(input_shape)
  restored, step = restore_variables(workdir, config, models.create(config.model, input_shape),
                                     input_shape, checkpoint)
  return config, restored if variables else restored['params'], step


# Keys a rerun of a workdir may change are `config.RESUMABLE` (the budget, logging, checkpointing,
# evaluation, where the data files are, who computes the convolutions, and the components' own
# budget keys). Any other difference from the workdir's config.json changes the model, the data or
# the method and is refused (`check_resume_config`).


def _flat(tree, prefix=''):
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      out.update(_flat(value, f'{prefix}{key}.'))
    else:
      out[f'{prefix}{key}'] = value
  return out


def config_changes(saved: ml_collections.ConfigDict, requested: ml_collections.ConfigDict):
  """{dotted key: (saved value, requested value)} of the keys that differ (tuples read as lists)."""
  a = _flat(json.loads(config_lib.complete(saved).to_json()))
  b = _flat(json.loads(config_lib.complete(requested).to_json()))
  return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def check_resume_config(config: ml_collections.ConfigDict, workdir: str):
  """Before anything is written to `workdir`: if it holds a config.json, compares it with `config`.
  A difference in a key outside config_lib.RESUMABLE raises ValueError with a one-line diff; allowed
  differences are logged and appended to config_changes.jsonl. Returns the allowed changes."""
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    return {}
  saved = load_config(workdir)
  changes = config_changes(saved, config)
  refused = {k: v for k, v in changes.items()
             if not any(k == r or (r.endswith('.') and k.startswith(r)) for r in config_lib.RESUMABLE)}
  if refused:
    diff = '; '.join(f'{k}: {old!r} -> {new!r}' for k, (old, new) in refused.items())
    raise ValueError(f'{workdir} holds a run of another model, data or method ({diff}): use a new '
                     f'--workdir (or remove {path} if nothing there is worth keeping).')
  if changes and jax.process_index() == 0:
    import time  # pylint: disable=g-import-not-at-top
    from absl import logging  # pylint: disable=g-import-not-at-top
    logging.info('Rerun of %s with changed settings: %s', workdir,
                 '; '.join(f'{k}: {old!r} -> {new!r}' for k, (old, new) in changes.items()))
    with open(os.path.join(workdir, 'config_changes.jsonl'), 'a') as f:
      f.write(json.dumps({'time': time.time(), 'changes': changes}) + '\n')
  return changes


class WorkdirInUse(RuntimeError):
  """Another process holds the workdir's lock."""


class WorkdirLock:
  """An exclusive lock on a workdir (`workdir/.lock`, fcntl), held while a run trains there: a
  second `train` on the same workdir stops with one line naming the holder (host and pid) instead of
  interleaving checkpoints, metrics and config. The lock goes with the process (also when it is
  killed); the file stays and only says who held it last. Process 0 takes it on a multi-host run."""

  def __init__(self, workdir: str):
    self._path = os.path.join(workdir, '.lock')
    self._file = None

  def __enter__(self):
    if jax.process_index() != 0:
      return self
    import fcntl  # pylint: disable=g-import-not-at-top
    import socket  # pylint: disable=g-import-not-at-top
    self._file = open(self._path, 'a+')
    try:
      fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
      self._file.seek(0)
      holder = self._file.read().strip() or 'another process'
      self._file.close()
      self._file = None
      raise WorkdirInUse(f'{os.path.dirname(self._path)} is in use by {holder}: one run per '
                         'workdir (wait for it, or stop it, or use another --workdir).') from None
    self._file.seek(0)
    self._file.truncate()
    self._file.write(f'pid {os.getpid()} on {socket.gethostname()}\n')
    self._file.flush()
    return self

  def __exit__(self, *exc):
    if self._file is not None:
      self._file.close()  # Releases the lock.
      self._file = None
    return False


def save_tree_npz(path: str, tree) -> None:
  """Writes a tree of arrays (nested dicts) as an .npz keyed by '/'-joined paths, atomically (a
  temporary file renamed over `path`): small trees kept outside the train state, e.g. the CFD
  classifier and the converted FID weights."""
  flat = {'/'.join(str(k.key) for k in p): np.asarray(v)
          for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}
  files.write_npz_atomically(path, **flat)


def load_tree_npz(path: str):
  """The nested dicts of arrays `save_tree_npz` wrote (read without pickle)."""
  tree: Dict[str, Any] = {}
  with np.load(path, allow_pickle=False) as arrays:
    for key in arrays.files:
      *parents, leaf = key.split('/')
      node = tree
      for p in parents:
        node = node.setdefault(p, {})
      node[leaf] = jnp.asarray(arrays[key])
  return tree


def save_config(config: ml_collections.ConfigDict, workdir: str):
  """Writes workdir/config.json from process 0, atomically: the other processes of a multi-host run
  read it at the same time (`check_resume_config`) and must find either no file or a whole one."""
  if jax.process_index() == 0:
    files.write_text_atomically(os.path.join(workdir, 'config.json'), config.to_json(indent=2))


def load_config(workdir: str) -> ml_collections.ConfigDict:
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    raise FileNotFoundError(f'No config.json in workdir {workdir!r}: it is not a training workdir.')
  with open(path) as f:
    try:
      saved = json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f'{path} is not valid JSON ({e}); it is not a config this library wrote, or '
                       'it was damaged.') from None
  return config_lib.complete(saved)


# The host work a stopped run left undone at the step of its latest checkpoint (`train.trainer`).
PENDING_FILE = 'pending_host_work.json'


def write_pending_host_work(workdir: str, step: int, update: bool, validate: bool) -> None:
  """Records, atomically, that the host update and/or the validation of `step` were not done: a run
  resumed from the checkpoint of `step` does them first, as the uninterrupted run did."""
  if jax.process_index() == 0:
    files.write_json_atomically(
        os.path.join(workdir, PENDING_FILE),
        {'step': int(step), 'update': bool(update), 'validate': bool(validate)})


def read_pending_host_work(workdir: str, step: int) -> Dict[str, bool]:
  """{'update': ..., 'validate': ...} left undone at `step` ({} if none, or if recorded for another
  step: a checkpoint after it, or an older one that a damaged newer one fell back to)."""
  path = os.path.join(workdir, PENDING_FILE)
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    try:
      record = json.load(f)
    except ValueError:
      return {}
  if not isinstance(record, dict) or record.get('step') != step:
    return {}
  return {k: bool(record.get(k)) for k in ('update', 'validate')}

