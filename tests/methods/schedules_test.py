"""Every optimizer of every library method takes its learning rate from the global step: a group's
first Adam update (|u| = rate for a gradient of ones) at steps on both sides of a configured decay
point has the size the configured schedule gives there, also for groups that train only in a later
phase or on some steps of a cycle."""

import jax.numpy as jnp
import pytest

from experiments.configs import dai2019
from experiments.configs import vaepp
from experiments.configs import xu2019
from vaeprior_jax import methods

PER_EPOCH = 10


def _update_size(method, group, step):
  """|the first update| of `group`'s optimizer at global step `step`, for a gradient of ones (Adam:
  the rate, up to float32 rounding of its bias corrections, ~1e-5)."""
  optimizer = method.optimizers()[group]
  params = {'w': jnp.zeros(3)}
  updates, _ = optimizer.update({'w': jnp.ones(3)}, optimizer.init(params), params, step=step)
  return float(jnp.abs(updates['w'][0]))


def _check(method, group, expected):
  """expected: {global step: the configured rate there}."""
  for step, rate in expected.items():
    assert _update_size(method, group, step) == pytest.approx(rate, rel=1e-4), (group, step)


def test_joint_decays_at_the_configured_epoch():
  config = xu2019.get_config('runlocal')
  config.train.update(learning_rate=1e-3, lr_decay_epochs=(2,), lr_decay_factor=0.1)
  method = methods.from_config(config, PER_EPOCH)
  _check(method, 'all', {19: 1e-3, 20: 1e-4})


def test_the_second_stage_decays_counting_from_its_start():
  config = dai2019.get_config('runlocal')
  config.train.update(num_steps=30, learning_rate=1e-3, lr_decay_epochs=(1,),
                      second_stage_learning_rate=2e-3, second_stage_lr_decay_epochs=(1,),
                      lr_decay_factor=0.5)
  method = methods.from_config(config, PER_EPOCH)
  assert [(p.name, p.start, p.end) for p in method.phases()][1][:2] == ('stage_2', 30)
  _check(method, 'first', {9: 1e-3, 10: 5e-4})
  _check(method, 'second', {30: 2e-3, 39: 2e-3, 40: 1e-3})  # Its epoch 1 is global step 40.


@pytest.mark.parametrize('entry', ['vaepp,static_mnist,runlocal', 'naive,static_mnist,runlocal'])
def test_vaepps_groups_decay_at_the_global_epochs_in_both_phases(entry):
  config = vaepp.get_config(entry)
  config.train.update(num_epochs=4.0, num_steps=-1, latent_gan_epochs=4.0, learning_rate=1e-3,
                      lr_decay_epochs=(2.0, 6.0), lr_decay_factor=0.5)
  method = methods.from_config(config, PER_EPOCH)
  (vae,) = [p for p in method.phases() if p.name == 'vae']
  (gan,) = [p for p in method.phases() if p.name == 'latent_gan']
  assert vae.end == gan.start == 40 and gan.end > 60
  for group in ('vae', 'critic'):  # (naive: the VAE, then the critic, at every step.)
    _check(method, group, {19: 1e-3, 20: 5e-4, 39: 5e-4})
  # The latent WGAN starts at the base rate (the VAE phase's decays do not apply) and decays at
  # global epoch 6, step 60, inside its phase: its optimizers count from step 40.
  for group in ('latent_critic', 'latent_generator'):
    _check(method, group, {40: 1e-3, 59: 1e-3, 60: 5e-4})


def test_post_hoc_phases_take_their_rates_at_the_global_step():
  config = xu2019.get_config('runlocal,table4,post_hoc,binarized_mnist')
  config.train.update(post_hoc_epochs=4.0, prior_learning_rates=(1e-3, 1e-4), init_from='x')
  method = methods.from_config(config, PER_EPOCH)
  phases = method.phases()
  assert [p.name for p in phases] == ['post_hoc_1', 'post_hoc_2']
  boundary = phases[1].start
  expected = {boundary - 1: phases[0].learning_rate, boundary: phases[1].learning_rate}
  assert expected[boundary - 1] != expected[boundary]
  _check(method, 'prior', expected)


def test_every_library_method_is_covered():
  covered = {'joint', 'two_stage', 'vaepp', 'vaepp_naive', 'post_hoc'}
  library = {'joint', 'post_hoc', 'iterative', 'two_stage', 'vaepp', 'vaepp_naive'}
  # iterative shares post_hoc's class (methods.prior_fitting.PriorFitting) and its optimizers.
  assert methods.REGISTRY.get('iterative') is methods.REGISTRY.get('post_hoc')
  assert library - covered == {'iterative'} and set(methods.REGISTRY.names()) >= library
