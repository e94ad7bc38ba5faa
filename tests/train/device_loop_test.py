"""Training with the data on the devices (`train.on_device`): its batches, the compiled loop against
plain steps, exact resumption, and the non-finite stop."""

import json
import os

import jax
import numpy as np
import pytest

import helpers
from vaeprior_jax import checkpoints
from vaeprior_jax import sharding
from vaeprior_jax.train import device_loop
from vaeprior_jax.train import trainer


def _grey_rows(n=40):
  """Image i is constant, of grey level (i + 1) / 255: a batch's values name its rows."""
  return np.broadcast_to(((np.arange(n) + 1) / np.float32(255.0)).astype(np.float32)[:, None, None,
                                                                                      None],
                         (n, 4, 4, 1)).copy()


def test_each_epoch_visits_every_example_once_in_a_new_order():
  images = _grey_rows()
  dd = device_loop.DeviceData(images, 8, seed=3, binarize=False, mesh=sharding.make_mesh())
  assert dd.steps_per_epoch == 5
  rows = [np.round(dd.batch_at(s)[:, 0, 0, 0] * 255).astype(int) - 1 for s in range(10)]
  epoch0, epoch1 = np.concatenate(rows[:5]), np.concatenate(rows[5:])
  assert sorted(epoch0) == sorted(epoch1) == list(range(40))
  assert not np.array_equal(epoch0, epoch1)
  # The batches are exactly the dataset's float32 values, and a function of (seed, step).
  np.testing.assert_array_equal(dd.batch_at(7), images[rows[7]])
  other = device_loop.DeviceData(images, 8, seed=4, binarize=False, mesh=sharding.make_mesh())
  assert not np.array_equal(other.batch_at(0), dd.batch_at(0))
  np.testing.assert_array_equal(
      device_loop.DeviceData(images, 8, 3, False, sharding.make_mesh()).batch_at(7), dd.batch_at(7))


def test_dynamic_binarization_draws_pixels_with_the_grey_levels_as_probabilities():
  levels = np.array([0.0, 0.1, 0.5, 0.9, 1.0], np.float32)
  image = np.tile(levels[:, None], (1, 5))[:, :, None]  # row r has grey level levels[r]
  images = np.broadcast_to(image, (40, 5, 5, 1)).copy()  # 40 copies: the order does not matter
  dd = device_loop.DeviceData(images, 40, seed=0, binarize=True, mesh=sharding.make_mesh())
  batches = np.stack([dd.batch_at(s) for s in range(60)])  # 2,400 draws of every pixel
  assert set(np.unique(batches)) == {0.0, 1.0}
  frequency = batches.mean(axis=(0, 1))[..., 0]  # [5, 5]
  np.testing.assert_array_equal(frequency[0], 0.0)
  np.testing.assert_array_equal(frequency[4], 1.0)
  np.testing.assert_allclose(frequency, np.broadcast_to(levels[:, None], (5, 5)), atol=0.04)
  assert not np.array_equal(batches[0], batches[1])  # new pixels at every step


def test_the_compiled_loop_takes_the_same_steps_as_plain_steps():
  config = helpers.tiny_config(prior='realnvp')
  images = (np.random.default_rng(0).random((48, 8, 8, 1))).astype(np.float32)
  # 8 steps cross an epoch boundary (6 steps per epoch); the second call starts mid-epoch, from the
  # state's step.
  (plain_state, plain_losses), (state, losses) = helpers.plain_and_on_device_steps(
      config, images, 8, (4, 4))
  assert int(state['step']) == 8
  np.testing.assert_allclose(losses, plain_losses, rtol=2e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               state['params'], plain_state['params'])


def _on_device_config(num_steps):
  config = helpers.tiny_config()
  config.train.on_device = True
  config.train.num_steps = num_steps
  config.train.checkpoint_every_steps = 8
  config.train.log_every_steps = 4
  return config


def test_on_device_training_resumes_exactly(tmp_path):
  with helpers.mock_binarized_mnist(64):
    straight, split = str(tmp_path / 'straight'), str(tmp_path / 'split')
    last = trainer.train_and_evaluate(_on_device_config(20), straight)
    trainer.train_and_evaluate(_on_device_config(8), split)
    trainer.train_and_evaluate(_on_device_config(20), split)  # Resumes at step 8.
  assert np.isfinite(last['loss'])
  a, step_a = helpers.latest_params(straight)
  b, step_b = helpers.latest_params(split)
  assert step_a == step_b == 20
  jax.tree.map(np.testing.assert_array_equal, a, b)
  with open(os.path.join(split, 'metrics.jsonl')) as f:
    assert [json.loads(l)['step'] for l in f] == [4, 8, 12, 16, 20]


def test_the_chunk_cap_changes_no_step(tmp_path, monkeypatch):
  """`train.device_chunk_steps` splits the steps between two host events into shorter compiled loops
  (3 + 1 instead of 4 here): the same parameters bit for bit, and the same logged metrics."""
  lengths, make_loop = [], device_loop.make_loop

  def recording_make_loop(*args):
    run_steps = make_loop(*args)
    return lambda state, key, length: (lengths.append(length), run_steps(state, key, length))[1]

  monkeypatch.setattr(device_loop, 'make_loop', recording_make_loop)
  workdirs, chunks = {}, {}
  with helpers.mock_binarized_mnist(64):
    for cap in (3, 1000):
      config = _on_device_config(12)
      config.train.device_chunk_steps = cap
      workdirs[cap] = str(tmp_path / str(cap))
      lengths.clear()
      trainer.train_and_evaluate(config, workdirs[cap])
      chunks[cap] = list(lengths)
  assert chunks == {3: [3, 1] * 3, 1000: [4] * 3}
  (a, step_a), (b, step_b) = (helpers.latest_params(workdirs[c]) for c in (3, 1000))
  assert step_a == step_b == 12
  jax.tree.map(np.testing.assert_array_equal, a, b)
  logged = {}
  for cap, workdir in workdirs.items():
    with open(os.path.join(workdir, 'metrics.jsonl')) as f:
      logged[cap] = [{k: v for k, v in json.loads(l).items() if k != 'steps_per_sec'} for l in f]
  assert [m['step'] for m in logged[3]] == [4, 8, 12]
  assert logged[3] == logged[1000]


def test_on_device_training_stops_at_a_non_finite_loss(tmp_path):
  config = _on_device_config(40)
  config.train.checkpoint_every_steps = 10
  config.train.log_every_steps = 5
  config.train.lr_decay_epochs = (2,)  # 8 steps per epoch: lr 1e27 from step 16.
  config.train.lr_decay_factor = 1e30
  workdir = str(tmp_path)
  with helpers.mock_binarized_mnist(64):
    with pytest.raises(FloatingPointError, match=r'Non-finite loss -?(nan|inf) at step 17.*step 10'):
      trainer.train_and_evaluate(config, workdir)
  manager = checkpoints.checkpoint_manager(workdir)
  assert manager.all_steps() == [10]
  manager.close()
