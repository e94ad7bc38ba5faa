"""What every binary does first, and the flags for runs over several hosts (one process per host)."""

import contextlib
import importlib
import os
import re
import sys

from absl import app
from absl import flags
from absl import logging
import jax

from vaeprior_jax import checkpoints
from vaeprior_jax.cpu import xla_options
from vaeprior_jax import data
from vaeprior_jax import interrupts
from vaeprior_jax import sharding
from vaeprior_jax.train import trainer

_MULTIHOST = flags.DEFINE_bool(
    'multihost', False, 'Call jax.distributed.initialize() before anything else. Without the three '
    'flags below, the cluster (SLURM, Open MPI, Kubernetes, Cloud TPU) is detected from the '
    'environment.')
_COORDINATOR = flags.DEFINE_string('coordinator_address', None,
                                   'host:port of process 0 (or $JAX_COORDINATOR_ADDRESS).')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'Number of processes.')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'This process, in [0, num_processes).')
_IMPORT = flags.DEFINE_multi_string(
    'import', [], 'Python modules (dotted names on the Python path) to import first: your own priors, '
    'nets, likelihoods or methods, registered by name (see vaeprior_jax.registry). Repeat the flag '
    'or separate names by commas; give the same to evaluate and analyze as to train.')


def import_extensions(names):
  """Imports the modules named in --import (a one-line error for one that cannot be found)."""
  for name in (n.strip() for entry in names for n in entry.split(',')):
    if not name:
      continue
    try:
      importlib.import_module(name)
    except ModuleNotFoundError as e:
      if e.name != name and not name.startswith(f'{e.name}.'):
        raise
      raise app.UsageError(f'--import={name}: no module {e.name!r} on the Python path '
                           '(PYTHONPATH, or the working directory).') from None


# The errors the library raises for bad input or a bad environment: a value, a missing file or
# dataset, a workdir in use, a checkpoint that cannot be written. The binaries print their one-line message without a traceback (`user_errors`).
USER_ERRORS = (ValueError, FileNotFoundError, data.DataError, checkpoints.WorkdirInUse,
               trainer.CheckpointSaveError)
TRACEBACK_ENV = 'VAEPRIOR_TRACEBACK'  # Set: errors keep their traceback.


def _innermost_message(error: BaseException) -> str:
  """The last line of the innermost exception behind `error` (its cause, or the one it handled):
  for a config file, the file's own error, without the wrappers around it."""
  while (error.__cause__ or error.__context__) is not None:
    error = error.__cause__ or error.__context__
  lines = [line for line in str(error).strip().splitlines() if line.strip()]
  message = lines[-1].strip() if lines else type(error).__name__
  for prefix in ('ValueError: ', 'OSError: ', 'FileNotFoundError: '):
    message = message[len(prefix):] if message.startswith(prefix) else message
  return message


def parse_flags(argv):
  """absl's flag parsing (`app.run(main, flags_parser=common.parse_flags)`), with one line, exit
  status 2, for a flag whose value failed in code behind it: a config file's get_config
  rejecting its argument. Other flag errors keep absl's own message."""
  try:
    return flags.FLAGS(argv)
  except flags.IllegalFlagValueError as e:
    if (e.__cause__ or e.__context__) is None or os.environ.get(TRACEBACK_ENV):
      raise
    flag = str(e).split(': ', 1)[0]
    sys.stderr.write(f'Error: {flag}: {_innermost_message(e)}\n(set {TRACEBACK_ENV}=1 for the '
                     'traceback)\n')
    raise SystemExit(2) from None
  except (AttributeError, KeyError) as e:  # An override of a key the config does not have.
    text, cause = '', e
    while cause is not None:
      text += repr(cause.args) + ' '
      cause = cause.__cause__ or cause.__context__
    given = [a for a in argv[1:] if a.startswith('--config.') and any(
        f"'{part}'" in text or f"\\'{part}\\'" in text
        for part in a.split('=', 1)[0][len('--config.'):].split('.'))]
    if not given or os.environ.get(TRACEBACK_ENV):
      raise
    key = given[0].split('=', 1)[0][len('--config.'):]
    hint = re.search(r'Did you mean "([^"]+)" instead of "([^"]+)"', text)
    hint = f'; did you mean {hint.group(1)!r} for {hint.group(2)!r}?' if hint else ''
    sys.stderr.write(f'Error: {given[0]}: the config has no key {key!r}{hint} (every key and its '
                     f'default: vaeprior_jax.config.defaults())\n(set {TRACEBACK_ENV}=1 for the '
                     'traceback)\n')
    raise SystemExit(2) from None


def config_value(holder):
  """The config of a config-file flag; a file that cannot be loaded (missing, or failing in its
  own code) raises a one-line ValueError naming the flag (`user_errors` prints it)."""
  try:
    value = holder.value
    value.get('entry')  # A file that failed to load reports it at the first attribute read.
    return value
  except Exception as e:  # pylint: disable=broad-except
    if os.environ.get(TRACEBACK_ENV):
      raise
    raise ValueError(f'--{holder.name}: {_innermost_message(e)}') from None


@contextlib.contextmanager
def user_errors():
  """Bad input ends the binary with 'Error: <the one-line message>' and exit status 2, no
  traceback. Messages of more than one line (most errors from JAX, XLA or TensorFlow) and every
  other exception keep their traceback, as does everything when $VAEPRIOR_TRACEBACK is set."""
  try:
    yield
  except USER_ERRORS as e:
    message = str(e).strip()
    if os.environ.get(TRACEBACK_ENV) or not message or '\n' in message:
      raise
    sys.stderr.write(f'Error: {message}\n(set {TRACEBACK_ENV}=1 for the traceback)\n')
    raise SystemExit(2) from None


@contextlib.contextmanager
def stoppable():
  """SIGTERM and SIGINT stop the binary's loops between two compiled calls (`interrupts`) and end
  it with one line and exit status 128 + the signal's number (143 for SIGTERM), within seconds."""
  with interrupts.handling():
    try:
      yield
    except interrupts.Interrupted as e:
      sys.stderr.write(f'{e.signal_name}: stopped between two compiled calls; rerun the same '
                       'command to go on from the work kept (docs/reliability.md says what is).\n')
      raise SystemExit(e.exit_code) from None


def start(argv):
  """Rejects stray arguments, imports the --import modules, joins the other processes (--multihost), keeps TensorFlow off the
  accelerators and the logs to our own progress lines; on the CPU, says when the process would run
  faster with glibc's huge-page tunable (`xla_options.host_memory_advice`)."""
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  import_extensions(_IMPORT.value)
  if _MULTIHOST.value:
    sharding.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  data.hide_accelerators_from_tf()
  trainer.quiet_library_logs()
  if jax.default_backend() == 'cpu':
    advice = xla_options.host_memory_advice()
    if advice:
      logging.info(advice)


def pullback_run_config(workdir: str):
  """The config of the pull-back run in `workdir`; a one-line ValueError for another run."""
  config = checkpoints.load_config(workdir)
  if config.model.prior != 'pullback':
    raise ValueError(f'{workdir} is not a pull-back run (model.prior={config.model.prior!r}).')
  return config


def restore_run(workdir: str, config):
  """(dataset, model, variables, step) of the latest checkpoint of the run `config` describes."""
  from vaeprior_jax import models  # pylint: disable=g-import-not-at-top
  dataset = data.load(config.data)
  model = models.create(config.model, dataset.input_shape)
  variables, step = checkpoints.restore_variables(workdir, config, model, dataset.input_shape)
  return dataset, model, variables, step
