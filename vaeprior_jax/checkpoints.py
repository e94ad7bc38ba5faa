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
import orbax.checkpoint as ocp

from vaeprior_jax import config as config_lib
from vaeprior_jax import methods
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
  (jax.ShapeDtypeStructs, see `abstract_train_state`)."""
  step = manager.latest_step() if step is None else step
  return manager.restore(step, args=ocp.args.StandardRestore(abstract_state))


def _abstract(tree, placement):
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=placement), tree)


def abstract_params(model, input_shape, placement=None):
  """Shapes and dtypes of `model`'s parameters, without computing them."""
  batch = jax.ShapeDtypeStruct((2,) + tuple(input_shape), jnp.float32)
  shapes = jax.eval_shape(lambda b: methods.init_variables(model, b, jax.random.key(0))['params'],
                          batch)
  return _abstract(shapes, placement)


def abstract_train_state(model, config, input_shape, placement=None) -> State:
  """Shapes and dtypes of the train state of `config` (its model and method), without computing it
  (to restore into), each with the sharding `placement` if given."""
  batch = jax.ShapeDtypeStruct((2,) + tuple(input_shape), jnp.float32)
  config = config_lib.complete(config)
  method = methods.from_config(config, 1)

  def create(b):
    variables = methods.init_variables(model, b, root_keys(config.seed)['init'])
    return methods.state_from_variables(method, variables)

  return _abstract(jax.eval_shape(create, batch), placement)


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
  placement = sharding.replicated(sharding.make_mesh())
  stored = manager.item_metadata(step)
  stored = getattr(stored, 'tree', stored)
  abstract = {k: _abstract(v, placement) for k, v in stored.items() if k != 'params'}
  abstract['params'] = abstract_params(model, input_shape, placement)
  state = restore_state(manager, abstract, step)
  manager.close()
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
  from vaeprior_jax import models  # pylint: disable=g-import-not-at-top
  config = load_config(workdir) if config is None else config
  input_shape = tuple(input_shape)
  restored, step = restore_variables(workdir, config, models.create(config.model, input_shape),
                                     input_shape, checkpoint)
  return config, restored if variables else restored['params'], step


def save_config(config: ml_collections.ConfigDict, workdir: str):
  if jax.process_index() == 0:
    with open(os.path.join(workdir, 'config.json'), 'w') as f:
      f.write(config.to_json(indent=2))


def load_config(workdir: str) -> ml_collections.ConfigDict:
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    raise FileNotFoundError(f'No config.json in workdir {workdir!r}: it is not a training workdir.')
  with open(path) as f:
    return config_lib.complete(json.load(f))
