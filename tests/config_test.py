"""Config keys: the library's own in `config.defaults`, each component's declared where it is
defined (`config.declare`), and the keys a rerun may change."""

import importlib

import pytest

from vaeprior_jax import config as config_lib


def test_components_declare_their_keys_once_and_defaults_hold_them_all():
  defaults = config_lib.defaults()
  assert config_lib.owner_of('model.pullback_weight') == 'model.prior=pullback'
  assert config_lib.owner_of('eval.log_z_samples') == 'model.prior=pullback'
  assert config_lib.owner_of('train.second_stage_epochs') == 'train.method=two_stage'
  assert config_lib.owner_of('model.latent_dim') == ''  # The library's own.
  assert defaults.model.pullback_weight == 10.0 and defaults.train.second_stage_epochs == 400.0
  owned = {f'{section}.{key}' for declared in config_lib.DECLARED.values()
           for section, keys in declared.items() for key in keys}
  everything = {f'{s}.{k}' for s in ('model', 'data', 'train', 'eval') for k in defaults[s]}
  assert owned < everything and len(owned) > len(everything) / 2
  # The components' budgets may change on a rerun; their models' settings may not.
  assert 'train.latent_gan_epochs' in config_lib.RESUMABLE
  assert 'model.pullback_weight' not in config_lib.RESUMABLE


def test_a_key_declared_by_two_components_is_refused_and_a_new_one_reaches_every_config():
  with pytest.raises(ValueError, match=r'user_b: model.pullback_weight is declared by '
                                       r'model.prior=pullback already'):
    config_lib.declare('user_b', model=dict(pullback_weight=1.0))
  with pytest.raises(ValueError, match="user_c: unknown config section 'modle'"):
    config_lib.declare('user_c', modle=dict(x=1))
  try:
    config_lib.declare('user_a', model=dict(user_a_width=7), resumable=('train.num_steps',))
    assert config_lib.defaults().model.user_a_width == 7
    assert config_lib.complete({'model': {'net': 'dense'}}).model.user_a_width == 7
    assert config_lib.owner_of('model.user_a_width') == 'user_a'
  finally:
    del config_lib.DECLARED['user_a']
  assert 'user_a_width' not in config_lib.defaults().model


def test_a_components_settings_apply_only_to_runs_that_use_it():
  from vaeprior_jax.evaluation import report  # pylint: disable=g-import-not-at-top
  config = config_lib.defaults()
  assert config_lib.owner_of('eval.log_z_ais_temperatures') == 'model.prior=pullback'
  assert config_lib.owner_active(config, '') and not config_lib.owner_active(
      config, 'model.prior=pullback') and not config_lib.owner_active(config, 'model.two_stage')
  with pytest.raises(ValueError, match='eval.log_z_ais_temperatures is a setting of '
                                       'model.prior=pullback, which this run does not use'):
    report.check_eval_overrides(config, {'log_z_ais_temperatures': 10})
  config.model.prior, config.model.two_stage = 'pullback', True
  assert config_lib.owner_active(config, 'model.two_stage')
  report.check_eval_overrides(config, {'log_z_ais_temperatures': 10})
  with pytest.raises(ValueError, match='Unknown eval.nope; allowed: '):
    report.check_eval_overrides(config, {'nope': 1})


def _leaves(config, prefix=''):
  for key, value in config.items():
    if hasattr(value, 'items'):
      yield from _leaves(value, f'{prefix}{key}.')
    else:
      yield f'{prefix}{key}', value


def test_every_key_with_a_value_of_another_type_is_a_one_line_error():
  importlib.import_module('vaeprior_jax')  # Every component's keys declared.
  defaults = config_lib.defaults()
  checked = 0
  for key, default in _leaves(defaults):
    if default is None:
      continue
    wrong = 'oops' if not isinstance(default, str) else 3
    config = config_lib.defaults()
    section, name = key.rsplit('.', 1) if '.' in key else ('', key)
    node = config_lib.value_at(config, section) if section else config
    with node.ignore_type():
      node[name] = wrong
    with pytest.raises(ValueError) as e:
      config_lib.check_types(config)
    assert str(e.value).startswith(f'{key} must be of type ') and '\n' not in str(e.value), str(e.value)
    checked += 1
  assert checked > 100
  config_lib.check_types(config_lib.defaults())
  # What the flag parser and JSON give is accepted: ints for floats, lists for tuples.
  config = config_lib.defaults()
  with config.ignore_type():
    config.train.num_epochs, config.train.lr_decay_epochs = 3, [1, 2]
  config_lib.check_types(config)
  with config.ignore_type():
    config.train.batch_size = True
  with pytest.raises(ValueError, match=r'train.batch_size must be of type int .* got True \(bool\)'):
    config_lib.check_types(config)


def test_check_integer_takes_python_and_numpy_integers_and_names_anything_else():
  import numpy as np  # pylint: disable=g-import-not-at-top
  for value in (2, np.int32(2), np.int64(7)):
    config_lib.check_integer(value, 'eval.x', 2)
  for value, shown in ((1, '1'), (True, 'True'), (2.0, '2.0'), ('3', "'3'"), (None, 'None')):
    with pytest.raises(ValueError) as e:
      config_lib.check_integer(value, 'eval.x', 2, ' (0: off)')
    assert str(e.value) == f'eval.x must be an integer >= 2 (0: off), got {shown}.'
