"""What a training method is, and the one compiled step that serves them all.

A method (`Method`) says
  - its parameter groups: how the parameters split into named subtrees (`partition`, `merge`), and
    each group's optax optimizer (`optimizers`);
  - its phases (`phases`): which groups train over which global steps;
  - its loss (`loss`), given the merged parameters, the groups being trained, a batch, a key and the
    step;
  - host-side hooks: `prepare` (before anything is built, e.g. train another run first),
    `initial_variables` (the starting variables, e.g. from a pretrained run or with pseudo-inputs
    set from data) and `train_key`.

`make_step(model, method, groups)` turns that into (state, batch, train_key) -> (state, metrics):
the gradient of the loss with respect to the trained groups only, each trained group updated by its
own optimizer (which gets the global step as the extra argument `step`), the other groups and their
optimizer states left as they are. The loop (`train.trainer.train_and_evaluate`) knows nothing of any
particular method: it compiles one step per distinct set of trained groups and runs the phases.

The train state is a dict: 'params', 'opt_state' ({group: optimizer state}), 'step', and, for models
with non-trainable variables (Flax collections other than 'params', e.g. batch statistics),
'model_state' ({collection: tree}), updated by the step where the model mutates them. All of it is
checkpointed, so resuming repeats an uninterrupted run exactly.

Methods are looked up by name (`train.method`) in `REGISTRY`; user code registers its own there.
"""

import dataclasses
import math
import numbers
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import optax
from jax.sharding import NamedSharding, PartitionSpec

from vaeprior_jax import config as config_lib
from vaeprior_jax import posteriors
from vaeprior_jax import priors
from vaeprior_jax import registry
from vaeprior_jax.methods import objectives
from vaeprior_jax.models import build
from vaeprior_jax.models.base import init_variables

State = Dict[str, Any]
Array = jax.Array


@dataclasses.dataclass(frozen=True)
class Phase:
  """Global steps [start, end) during which the parameter groups `groups` train.

  With a `cycle` (a tuple of group tuples), the phase alternates: step start + k trains
  cycle[k % len(cycle)] only (e.g. five critic steps, then one generator step), each step on its
  own batch; `groups` must then be the union of the cycle's groups. With a `sequence` (a tuple of
  group tuples) instead, every step makes one update per group tuple, one after the other, on the
  same batch (e.g. the VAE, then the critic it is trained against). Without either, every step
  trains all of `groups` together with one gradient.
  """
  name: str
  groups: Tuple[str, ...]
  start: int
  end: int
  learning_rate: Optional[float] = None  # For the log, where the phase has one constant rate.
  cycle: Tuple[Tuple[str, ...], ...] = ()
  sequence: Tuple[Tuple[str, ...], ...] = ()

  def __post_init__(self):
    if self.cycle and self.sequence:
      raise ValueError(f'Phase {self.name}: a cycle or a sequence, not both.')
    for name, parts in (('cycle', self.cycle), ('sequence', self.sequence)):
      union = sorted({g for c in parts for g in c})
      if parts and union != sorted(self.groups):
        raise ValueError(f'Phase {self.name}: groups {self.groups} must be the union of its '
                         f'{name} {parts}.')

  def groups_at(self, step: int) -> Tuple[str, ...]:
    """The groups step `step` trains."""
    if not self.cycle:
      return self.groups
    return self.cycle[(step - self.start) % len(self.cycle)]

  @property
  def key(self) -> Tuple:
    """What determines the phase's compiled step: its groups, its cycle and where the cycle starts,
    its sequence."""
    return (self.groups, self.cycle, self.start % len(self.cycle) if self.cycle else 0,
            self.sequence)

  @property
  def group(self) -> str:
    """The one group a single-group phase trains."""
    if len(self.groups) != 1:
      raise ValueError(f'Phase {self.name} trains {len(self.groups)} groups: {self.groups}.')
    return self.groups[0]


def phase_of(phases: Sequence[Phase], step: int) -> Phase:
  for phase in phases:
    if phase.start <= step < phase.end:
      return phase
  raise ValueError(f'Step {step} is past the last phase (which ends at step {phases[-1].end}).')


def total_steps(phases: Sequence[Phase]) -> int:
  return phases[-1].end if phases else 0


class Method:
  """Base class of training methods; see the module docstring. One instance per run."""

  name = 'method'
  # The training log line's metrics, in order, as (key, label, format), each shown where the step
  # reports it; a method adds its own (e.g. a critic's loss).
  log_fields = (('loss', 'loss', '%.2f'), ('elbo', 'elbo', '%.2f'),
                ('reconstruction', 'rec', '%.2f'), ('kl', 'kl', '%.2f'), ('beta', 'beta', '%.3f'),
                ('learning_rate', 'lr', '%.1e'), ('gamma', 'gamma', '%.4g'),
                ('sqrt_mse', 'sqrt_mse', '%.4g'), ('gamma_z', 'gamma_z', '%.4g'),
                ('sqrt_mse_z', 'sqrt_mse_z', '%.4g'))
  # Whether `loss` honours train.kl_estimate=closed_form (`objectives.training_loss`).
  closed_form_kl = False
  # The training split's size, set by the loop (`train.trainer.train_and_evaluate`) before any hook runs;
  # None where the method is used outside it.
  num_train_examples = None

  def __init__(self, config, steps_per_epoch: int):
    self.config = config
    self.steps_per_epoch = int(steps_per_epoch)

  @classmethod
  def validate(cls, config) -> None:
    """Raises ValueError naming a bad setting, before any data is loaded."""

  # Parameter groups -------------------------------------------------------------------------------

  def partition(self, params) -> Dict[str, Any]:
    """{group: subtree} of the parameters (default: one group, 'all')."""
    return {'all': params}

  def merge(self, groups: Dict[str, Any]):
    """The inverse of `partition`."""
    return groups['all']

  def optimizers(self) -> Dict[str, optax.GradientTransformationExtraArgs]:
    """{group: optimizer}; `update` receives the global step as the keyword argument `step`."""
    raise NotImplementedError

  # Schedule and loss ------------------------------------------------------------------------------

  def phases(self) -> List[Phase]:
    raise NotImplementedError

  def loss(self, model, params, model_state: Dict[str, Any], trained: Dict[str, Any], batch: Array,
           rng: Array, step: Array) -> Tuple[Array, Dict[str, Array], Dict[str, Any]]:
    """(loss, metrics, new model_state) of one batch. `params` are all parameters, `trained` the
    groups being trained (the loss is differentiated with respect to these; penalties on the trained
    parameters only should read them). Apply the model with `apply_model`. Metrics should include
    'loss'; those of `log_fields` it has appear on the loop's log line."""
    raise NotImplementedError

  # Host-side hooks --------------------------------------------------------------------------------

  def train_key(self, key: Array) -> Array:
    """The key whose fold_in(., step) is step's key."""
    return key

  def prepare(self, workdir: str, train_fn: Callable[[Any, str], Any]) -> None:
    """Runs before the model is trained; `train_fn(config, workdir)` trains another run."""

  def initial_variables(self, model, batch: Array, key: Array, train_images, mesh) -> Dict[str, Any]:
    """The variables ({'params': ..., other collections}) training starts from, replicated over
    `mesh`; `batch` is the first training batch, `train_images` the training split (host arrays)."""
    return jax.jit(lambda b, k: init_variables(model, b, k),
                   out_shardings=NamedSharding(mesh, PartitionSpec()))(batch, key)

  def describe(self) -> str:
    """One line for the log: the phases, when there are several."""
    return ''

  def host_update_every(self) -> int:
    """Steps between calls of `host_update` (0: never)."""
    return 0

  # Whether `host_update` also runs before every early-stopping validation (when the validation
  # metric depends on what it updates, e.g. the pull-back prior's log Z).
  host_update_before_validation: bool = False

  def host_update(self, model, state: State, step: int, dataset, mesh,
                  key: Array) -> Tuple[State, Dict[str, float]]:
    """A host-side update of the train state after every `host_update_every()`-th step, before the
    state of that step is checkpointed (e.g. a statistic over the training set); `key` is a function
    of the step, so a resumed run updates as an uninterrupted one. Returns (state, metrics to log at
    that step). The default changes nothing."""
    del model, step, dataset, mesh, key
    return state, {}


def state_from_variables(method: Method, variables: Dict[str, Any]) -> State:
  """The train state at step 0: the variables, and each group's fresh optimizer state."""
  params = variables['params']
  groups = method.partition(params)
  optimizers = method.optimizers()
  state = {'params': params,
           'opt_state': {g: optimizers[g].init(groups[g]) for g in optimizers},
           'step': jnp.zeros((), jnp.int32)}
  model_state = {k: v for k, v in variables.items() if k != 'params'}
  if model_state:
    state['model_state'] = model_state
  return state


def model_variables(state: State) -> Dict[str, Any]:
  """The variables to apply the model with, from a train state: {'params', **model_state}."""
  return {'params': state['params'], **state.get('model_state', {})}


def apply_model(model, params, model_state: Optional[Dict[str, Any]], *args, method, **kwargs):
  """(model.apply(...), new model_state): the non-trainable collections are mutable, so layers that
  keep statistics update them; without any, the model state stays empty."""
  if not model_state:
    return model.apply({'params': params}, *args, method=method, **kwargs), {}
  out, updated = model.apply({'params': params, **model_state}, *args, method=method,
                             mutable=list(model_state), **kwargs)
  return out, {k: updated.get(k, v) for k, v in model_state.items()}


def phase_steps(model, method: Method, phase: Phase) -> Dict[Tuple[str, ...], Callable]:
  """{groups: step} for each distinct group tuple a phase trains (one for a phase without a cycle).
  A cycle's steps all return the union of their metrics, NaN where a step computes none, so that
  every step of the phase has one metrics structure. A phase with a sequence has one step that makes
  its updates in turn (`make_sequence_step`)."""
  if phase.sequence:
    return {phase.groups: make_sequence_step(model, method, phase.sequence)}
  if not phase.cycle:
    return {phase.groups: make_step(model, method, phase.groups)}
  plain = {groups: make_step(model, method, groups) for groups in dict.fromkeys(phase.cycle)}
  names = {}  # The union of the steps' metrics: {name: dtype}, found by tracing once.

  def union(state, batch, train_key):
    if not names:
      for fn in plain.values():
        for k, v in jax.eval_shape(fn, state, batch, train_key)[1].items():
          names[k] = v.dtype
    return names

  def padded(fn):
    def run(state, batch, train_key):
      new, metrics = fn(state, batch, train_key)
      return new, {k: metrics[k] if k in metrics else jnp.full((), jnp.nan, dtype)
                   for k, dtype in sorted(union(state, batch, train_key).items())}
    return run

  return {groups: padded(fn) for groups, fn in plain.items()}


def make_phase_step(model, method: Method, phase: Phase):
  """One step for every step of a phase: for a phase with a cycle, a `lax.switch` over
  `phase_steps` by the step's position in the cycle (what the on-device loop compiles; the host
  loop calls each group's own compiled step instead: XLA:CPU runs a conditional's convolutions
  many times slower than the same ops outside one)."""
  steps = phase_steps(model, method, phase)
  if not phase.cycle:
    return steps[phase.groups]
  order = list(steps)
  position = jnp.asarray([order.index(g) for g in phase.cycle], jnp.int32)
  branches = [steps[g] for g in order]

  def step_fn(state, batch, train_key):
    which = position[(state['step'] - phase.start) % len(phase.cycle)]
    return jax.lax.switch(which, branches, state, batch, train_key)

  return step_fn


def make_sequence_step(model, method: Method, sequence: Sequence[Sequence[str]]):
  """(state, batch, train_key) -> (state, metrics): one step that updates each group tuple of
  `sequence` in turn on the same batch, each from the parameters the ones before it left (update i
  with the key fold_in(fold_in(train_key, i), s) for i > 0, the first as `make_step`'s), then
  counts one step. The metrics are the union, a later update's value replacing an earlier one of
  the same name, but for 'loss': the first update's (the objective the phase is for, e.g. the VAE's
  loss, not its critic's)."""
  steps = [make_step(model, method, groups, advance=False) for groups in sequence]

  def step_fn(state: State, batch: Array, train_key: Array):
    metrics = {}
    for i, fn in enumerate(steps):
      state, m = fn(state, batch, jax.random.fold_in(train_key, i) if i else train_key)
      metrics = {**metrics, **m, **({'loss': metrics['loss']} if 'loss' in metrics else {})}
    return dict(state, step=state['step'] + 1), metrics

  return step_fn


def make_step(model, method: Method, groups: Sequence[str], advance: bool = True):
  """(state, batch, train_key) -> (state, metrics): one step that trains `groups`; step s uses the
  key fold_in(train_key, s). `advance=False` leaves the step count as it is (one update of a
  `make_sequence_step`)."""
  groups = tuple(groups)
  optimizers = method.optimizers()
  for g in groups:
    if g not in optimizers:
      raise ValueError(f'{method.name} has no parameter group {g!r}; its groups: '
                       f'{", ".join(optimizers)}.')

  def step_fn(state: State, batch: Array, train_key: Array):
    step = state['step']
    rng = jax.random.fold_in(train_key, step)
    parts = method.partition(state['params'])
    trained = {g: parts[g] for g in groups}

    def loss_fn(trained):
      params = method.merge({**parts, **trained})
      loss, metrics, model_state = method.loss(model, params, state.get('model_state'), trained,
                                               batch, rng, step)
      return loss, (metrics, model_state)

    grads, (metrics, model_state) = jax.grad(loss_fn, has_aux=True)(trained)
    opt_state = dict(state['opt_state'])
    new = dict(trained)
    for g in groups:
      updates, opt_state[g] = optimizers[g].update(grads[g], opt_state[g], trained[g], step=step)
      new[g] = optax.apply_updates(trained[g], updates)
    out = dict(state, params=method.merge({**parts, **new}), opt_state=opt_state,
               step=step + 1 if advance else step)
    if model_state:
      out['model_state'] = model_state
    return out, metrics

  return step_fn


def scale_by_step_schedule(schedule: Callable[[Array], Array]
                           ) -> optax.GradientTransformationExtraArgs:
  """Multiplies updates by -schedule(step), `step` being the global step the train step passes (a
  learning rate set by the run's phases rather than by a per-optimizer count)."""

  def update_fn(updates, state, params=None, *, step, **extra_args):
    del params, extra_args
    rate = schedule(step)
    return jax.tree.map(lambda u: -rate * u, updates), state

  return optax.GradientTransformationExtraArgs(lambda params: optax.EmptyState(), update_fn)


def insert_log_fields_before(key: str, fields) -> Tuple[Tuple[str, str, str], ...]:
  """`Method.log_fields` with `fields` inserted before the field of metric `key`."""
  at = [f[0] for f in Method.log_fields].index(key)
  return Method.log_fields[:at] + tuple(fields) + Method.log_fields[at:]


def adam_at_global_step(schedule: Callable[[Array], Array], b1: float = 0.9
                        ) -> optax.GradientTransformationExtraArgs:
  """Adam whose learning rate is `schedule` at the global step the train step passes (`step`), not
  at the optimizer's own update count: a group trained on some steps only (in a later phase, or
  every n-th step of a cycle) still follows the run's schedule. Where the group trains every step
  from step 0 the two agree, bit for bit."""
  return optax.chain(optax.scale_by_adam(b1=b1), scale_by_step_schedule(schedule))


# Method classes by name: a class taking (config, steps_per_epoch).
REGISTRY = registry.Registry('train.method')


def method_name(train_config) -> str:
  """`train.method` ('' reads as 'joint')."""
  return train_config.get('method') or 'joint'


def method_class(train_config):
  """The class of the run's method; a one-line error names the key, the value and what is allowed."""
  name = method_name(train_config)
  if name not in REGISTRY:
    raise ValueError(f'Unknown train.method {name!r}; allowed: {", ".join(REGISTRY.names())}.')
  return REGISTRY.get(name)


def _check_train_values(tc) -> None:
  """The `config.train` values every method reads: one line naming the first bad one."""
  def bad(key, allowed):
    raise ValueError(f'train.{key} must be {allowed}, got {tc[key]!r}.')
  config_lib.check_integer(tc.batch_size, 'train.batch_size', 1)
  if tc.num_steps != -1 and tc.num_steps < 1:
    bad('num_steps', '>= 1, or -1 (then train.num_epochs sets the budget)')
  if tc.num_steps == -1 and not tc.num_epochs > 0:
    bad('num_epochs', '> 0 when train.num_steps is -1')
  if not tc.learning_rate > 0:
    bad('learning_rate', '> 0')
  for key in ('checkpoint_every_steps', 'log_every_steps', 'max_checkpoints_to_keep',
              'device_chunk_steps'):
    config_lib.check_integer(tc[key], f'train.{key}', 1)
  if not (isinstance(tc.checkpoint_every_seconds, numbers.Real)
          and not isinstance(tc.checkpoint_every_seconds, bool)
          and 0 <= tc.checkpoint_every_seconds < math.inf):
    bad('checkpoint_every_seconds', 'a number of seconds >= 0 (0: off)')
  if tc.warmup_epochs < 0:
    bad('warmup_epochs', '>= 0')
  if tc.l2_reg < 0:
    bad('l2_reg', '>= 0')
  if tc.kl_estimate not in objectives.KL_ESTIMATES:
    bad('kl_estimate', ' or '.join(objectives.KL_ESTIMATES))


def _check_closed_form_kl(config) -> None:
  """`train.kl_estimate=closed_form` needs a method whose objective takes it (`closed_form_kl`),
  and a one-level model whose posterior is a diagonal Gaussian and whose prior is N(0, I) (their
  entries say so: `diagonal_gaussian`, `standard_normal`): the pair whose KL the objective has in
  closed form."""
  if config.train.kl_estimate != 'closed_form':
    return
  mc = config.model
  name = method_name(config.train)
  if not method_class(config.train).closed_form_kl:
    raise ValueError(f'train.kl_estimate=closed_form is not an option of train.method={name}; '
                     'use train.kl_estimate=sample.')
  if not (posteriors.REGISTRY.info(mc.posterior).get('diagonal_gaussian')
          and priors.REGISTRY.info(mc.prior).get('standard_normal')
          and build.net_levels(mc) == 1):
    raise ValueError(f'train.kl_estimate=closed_form needs a one-level model with '
                     f'model.posterior=gaussian and model.prior=standard; got model.net='
                     f'{mc.net}, model.posterior={mc.posterior}, model.prior={mc.prior}.')


def validate(config) -> None:
  """Raises ValueError naming the first bad `config.train` value, before any data is loaded."""
  _check_train_values(config.train)
  method_class(config.train).validate(config)
  _check_closed_form_kl(config)


def from_config(config, steps_per_epoch: int) -> Method:
  return method_class(config.train)(config, steps_per_epoch)
