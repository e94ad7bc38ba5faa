"""The library's config defaults and the token parser the paper configs share.

A run's config has four sections the library reads: `model`, `data`, `train` and `eval` (and
`seed`). `defaults()` holds every key with its default: the keys the generic code reads are
written here, each component's own keys where the component is defined (`declare`: e.g. the
pull-back prior's in `priors/pullback/prior.py`); the paper configs
(`experiments/configs/*.py`) start from it and set what their paper says. `complete(config)` fills
what a config leaves out from these defaults, so a config written by hand, or the `config.json` of a
run from before a key existed, reads the same as a full one; the library then reads each key
directly, never with a default of its own.
"""

import numbers
from typing import Any, Dict, List, Sequence

import ml_collections


# The keys components declare, {owner: {section: {key: default}}} (`declare`).
DECLARED: Dict[str, Dict[str, Dict[str, Any]]] = {}
# The keys a rerun of a workdir may change (`checkpoints.check_resume_config`): the budget,
# logging, checkpointing, evaluation, where the data files are, who computes the convolutions; a
# key ending in '.' stands for its section. Components add their own budget keys (`declare`).
RESUMABLE: List[str] = [
    'train.num_epochs', 'train.num_steps', 'train.checkpoint_every_steps',
    'train.checkpoint_every_seconds',
    'train.max_checkpoints_to_keep', 'train.log_every_steps', 'train.on_device',
    'train.device_chunk_steps',
    'train.eval_every_epochs', 'train.early_stopping_num_samples',
    'train.early_stopping_patience_epochs', 'data.manual_dir', 'data.data_dir', 'data.cache_dir',
    'model.conv_backend', 'eval.']


def declare(owner: str, resumable: Sequence[str] = (), **sections: Dict[str, Any]) -> None:
  """Adds a component's config keys and their defaults to `defaults()`: `owner` names the component
  (e.g. 'model.prior=pullback'), `sections` gives {key: default} per section ('model', 'train',
  'eval', 'data'), `resumable` the dotted keys of its budget a rerun may change. Call it once, where
  the component is defined (a module-level call, as the library's components do); a key another
  owner declared already raises."""
  for section, keys in sections.items():
    if section not in ('model', 'data', 'train', 'eval'):
      raise ValueError(f'{owner}: unknown config section {section!r}; allowed: model, data, train, '
                       'eval.')
    for key in keys:
      for other, declared in DECLARED.items():
        if other != owner and key in declared.get(section, {}):
          raise ValueError(f'{owner}: {section}.{key} is declared by {other} already.')
  DECLARED[owner] = {section: dict(keys) for section, keys in sections.items()}
  RESUMABLE.extend(k for k in resumable if k not in RESUMABLE)


def owner_of(key: str) -> str:
  """The component that declared a dotted key ('' for the library's own keys)."""
  section, _, name = key.partition('.')
  return next((o for o, d in DECLARED.items() if name in d.get(section, {})), '')


def owner_active(config, owner: str) -> bool:
  """Whether the component `owner` (as `declare` names it) is part of the run `config` describes:
  'a.b=v' when config's a.b is v, 'a.b' when it is true, '' (the library) always."""
  if not owner:
    return True
  key, eq, value = owner.partition('=')
  actual = value_at(config, key)
  return str(actual) == value if eq else bool(actual)


def defaults() -> ml_collections.ConfigDict:
  """Every key the library reads, with its default: its own and those its components declared."""
  config = ml_collections.ConfigDict()
  config.seed = 0

  model = config.model = ml_collections.ConfigDict()
  model.net = 'dense'                 # nets.REGISTRY (one-level and two-level nets)
  model.prior = 'standard'            # priors.REGISTRY
  model.posterior = 'gaussian'        # posteriors.REGISTRY
  model.likelihood = 'bernoulli'      # likelihoods.REGISTRY (bernoulli, gaussian, discretized_logistic)
  model.latent_dim = 40               # z (of z2 in the two-level models)
  model.z1_dim = 0                    # the two-level models' z1 (0: latent_dim)
  model.negative_slope = 0.2          # leaky ReLU, TensorFlow's default
  model.conv_backend = 'xla'          # nets.CONV_BACKENDS: xla | onednn (CPU, opt-in: docs/cpu_performance.md)

  data = config.data = ml_collections.ConfigDict()
  data.dataset = 'binarized_mnist'     # data.DATASETS; 'arrays': your own .npz (data.path)
  data.path = ''                      # data.dataset=arrays: the .npz file (docs/data.md)
  data.manual_dir = ''                # folder with the original files (offline preparation)
  data.data_dir = ''                  # tfds data_dir; '' = tfds' default (~/tensorflow_datasets)
  data.cache_dir = ''                 # keep the prepared splits here as .npz (no TF to reload)
  data.validation_size = 0            # 0: the dataset's default
  data.hold_out_validation = True     # False: train on the whole training split (no validation
                                      # split; Dai & Wipf's code), where tfds has none to read
  data.split_seed = 0
  data.binarize = True                # mnist / fashion_mnist / omniglot: binarize the grey levels
                                      # (anew every step; the test set 10 times); False: grey levels
                                      # in [0, 1] as they are (Dai & Wipf's continuous data)
  data.celeb_a_crop = 140             # celeb_a: centre crop before 64x64: 140 (WAE's) | 128 (Dai &
                                      # Wipf's code, its [45:173, 25:153])
  data.test_binarizations = 10
  data.test_binarization_seed = 0

  train = config.train = ml_collections.ConfigDict()
  train.method = 'joint'              # methods.REGISTRY: joint | post_hoc | iterative | two_stage |
                                      # vaepp | vaepp_naive | your own
  train.num_epochs = 2400.0
  train.num_steps = -1                # > 0 overrides num_epochs
  train.on_device = False             # True: data on the devices, steps in compiled loops
  train.device_chunk_steps = 50       # on_device: at most this many steps per compiled loop; the
                                      # loop sees a SIGTERM only between loops
  train.batch_size = 128
  train.learning_rate = 1e-4
  train.lr_decay_epochs = ()
  train.lr_decay_factor = 0.1
  train.normalize_gradients = False   # Adam on per-tensor unit-norm gradients (Tomczak & Welling)
  train.warmup_epochs = 100.0         # beta: beta_start -> 1 linearly
  train.beta_start = 0.01
  train.kl_estimate = 'sample'        # the ELBO's KL: sample (log q(z|x) - log p(z) at the z drawn) |
                                      # closed_form (Gaussian q, standard p(z): Dai & Wipf's code)
  train.l2_reg = 1e-4                 # on kernels of non-linear layers
  train.checkpoint_every_steps = 5000
  train.checkpoint_every_seconds = 0.0  # > 0: also save at the first log step after this many
                                      # seconds without a checkpoint (against kills without SIGTERM)
  train.max_checkpoints_to_keep = 3
  train.log_every_steps = 500
  train.early_stopping = False        # validate every eval_every_epochs, keep the best in best/
  train.early_stopping_metric = 'nll'  # nll | elbo
  train.eval_every_epochs = 20.0
  train.early_stopping_num_samples = 100
  train.early_stopping_patience_epochs = 0.0  # > 0: stop after this many epochs without a best

  ev = config.eval = ml_collections.ConfigDict()
  ev.num_samples = 1000
  ev.chunk_size = 100                 # samples per vmapped chunk; memory ~ chunk x batch
  ev.batch_size = 128                 # test examples per compiled call
  ev.memory_budget_gb = 0.0           # per device, for the estimator (0: 3/4 of a device's memory):
                                      # a chunk that needs more is made smaller
  ev.active_units_samples = 1000
  ev.active_units_batch_size = 0      # training images per call of the active-units pass (0: batch_size)
  ev.proposal_input = 'target'        # what q(z|.) reads: target | grey (VAEPP's code: the grey image
                                      # e of a binarized test image, for runs trained on grey levels)
  for declared in DECLARED.values():
    for section, keys in declared.items():
      config[section].update(keys)
  return config


def _fill(target: ml_collections.ConfigDict, source) -> None:
  for key, value in source.items():
    if isinstance(value, (ml_collections.ConfigDict, dict)) and isinstance(
        target.get(key), ml_collections.ConfigDict):
      _fill(target[key], value)
    else:  # As given, whatever the default's type (JSON gives lists for tuples).
      with target.ignore_type():
        target[key] = value


def complete(config) -> ml_collections.ConfigDict:
  """A copy of `config` (a ConfigDict or a nested dict) with what it leaves out taken from
  `defaults()`. Keys the defaults lack (a paper's `entry`, `paper_nll`, your own) are kept."""
  out = defaults()
  source = config.to_dict() if isinstance(config, ml_collections.ConfigDict) else dict(config)
  _fill(out, source)
  return out


def check_types(config) -> None:
  """Raises a one-line ValueError for the first key whose value has another type than its default
  (an int where a float is the default, and a list where a tuple is, are fine; keys without a
  default, or with None as theirs, are not checked). A config file or `config.json` written by
  hand is not type-checked by the flag parser."""
  def walk(default, given, prefix):
    for key, value in given.items():
      if key not in default:
        continue
      expected = default[key]
      name = f'{prefix}{key}'
      if isinstance(expected, ml_collections.ConfigDict):
        if not isinstance(value, (ml_collections.ConfigDict, dict)):
          raise ValueError(f'{name} must be a section of keys, got {value!r}.')
        walk(expected, value, name + '.')
        continue
      if expected is None:
        continue
      if isinstance(expected, bool):
        ok = isinstance(value, bool)
      elif isinstance(expected, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
      elif isinstance(expected, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
      elif isinstance(expected, (tuple, list)):
        ok = isinstance(value, (tuple, list))
      else:
        ok = isinstance(value, type(expected))
      if not ok:
        raise ValueError(f'{name} must be of type {type(expected).__name__} (like its default '
                         f'{expected!r}), got {value!r} ({type(value).__name__}).')
  walk(defaults(), config, '')


def check_integer(value, name: str, least: int, note: str = '') -> None:
  """One line naming `name` unless `value` is an integer (Python's or numpy's, not a bool) >= `least`;
  `note` follows the bound in the message, e.g. ' (0: eval.batch_size)'."""
  if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
    raise ValueError(f'{name} must be an integer >= {least}{note}, got {value!r}.')


def complete_section(section, name: str) -> ml_collections.ConfigDict:
  """One section (e.g. `config.model`) completed from the defaults of section `name`."""
  return complete({name: section})[name]


def parse_tokens(arg: str, choices: Dict[str, Sequence[str]], paper: str) -> Dict[str, str]:
  """Splits a config argument 'a,b,c' into {kind: token}, each token found in one of `choices`
  ({kind: allowed tokens}); raises ValueError naming a bad or repeated token and what is allowed."""
  out = {}
  for token in (t.strip() for t in arg.split(',')):
    if not token:
      continue
    kinds = [k for k, allowed in choices.items() if token in allowed]
    if not kinds:
      allowed = '; '.join(f'{k}: {", ".join(v)}' for k, v in choices.items())
      raise ValueError(f'Unknown {paper} config token {token!r}; allowed: {allowed}.')
    if kinds[0] in out:
      raise ValueError(f'Two {kinds[0]} tokens in the {paper} config argument: '
                       f'{out[kinds[0]]!r} and {token!r}.')
    out[kinds[0]] = token
  return out


def value_at(config, key: str):
  """config['a.b.c'] for a dotted key (e.g. 'model.net')."""
  value = config
  for part in key.split('.'):
    value = value[part]
  return value


# What every paper's number depends on: `paper_setting` records these beside a paper's own keys.
PAPER_SETTING_KEYS = ('model.net', 'model.prior', 'model.posterior', 'model.likelihood',
                      'data.dataset', 'data.binarize', 'train.method')


def paper_setting(config, keys: Sequence[str] = ()) -> ml_collections.ConfigDict:
  """The values of `config` at PAPER_SETTING_KEYS and the dotted `keys` (e.g. 'model.flow_depth'),
  as nested sections: a paper config's `paper_setting`, what its `paper_*` numbers are for
  (`evaluation.report.paper_metrics` reports them only for a run whose values at these keys are
  the same)."""
  out = {}
  for key in dict.fromkeys(PAPER_SETTING_KEYS + tuple(keys)):
    *sections, name = key.split('.')
    node = out
    for part in sections:
      node = node.setdefault(part, {})
    node[name] = value_at(config, key)
  return ml_collections.ConfigDict(out)
