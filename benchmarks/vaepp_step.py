"""VAEPP's costs on the machine it runs on: milliseconds per compiled training step of Algorithm 2
(`train.method=vaepp`: the VAE, D, 128 prior draws, the WGAN-div penalty's double backprop) and of
Algorithm 1's cycle (five VAE steps and a critic step, averaged per step), against the plain VAE step on the same nets (`standard`: the standard
prior, no critic), measured in one process, alternating; and the posterior-based log Z estimator's
samples per second (`normalizer.posterior_log_z_fn`: encoder, truncated-normal draws, decoder and D).

  python -m benchmarks.vaepp_step [--batch=128] [--steps=30] [--log_z_images=128] [--smoke]

Prints one JSON object; results go to benchmarks/RESULTS.md with the machine, date and versions.
"""

import json
import time

import jax
import numpy as np
from absl import app
from absl import flags

from experiments.configs import vaepp as vaepp_configs
from vaeprior_jax import methods
from vaeprior_jax import models
from vaeprior_jax.priors.pullback import normalizer
from vaeprior_jax import sharding

_BATCH = flags.DEFINE_integer('batch', 128, 'Training batch.')
_STEPS = flags.DEFINE_integer('steps', 5, 'Timed passes through each cycle per round (3 rounds, '
                             'alternating; a cycle is 1 step, or 6 for the naive method).')
_LOG_Z_IMAGES = flags.DEFINE_integer('log_z_images', 128, 'Images per log Z call.')
_LOG_Z_SAMPLES = flags.DEFINE_integer('log_z_samples', 100, 'Samples per image per log Z call.')
_SMOKE = flags.DEFINE_bool('smoke', False, 'Tiny sizes: checks that the script runs.')

SHAPE = (28, 28, 1)


def _step_fn(entry: str, batch: int):
  """(the compiled steps of the entry's first phase, one per group tuple of its cycle, in cycle
  order; its state, a batch, the key, the model, its variables, the mesh) on the device mesh."""
  config = vaepp_configs.get_config(entry)
  config.train.batch_size = batch
  model = models.create(config.model, SHAPE)
  method = methods.from_config(config, 390)
  method.num_train_examples = 50000
  mesh = sharding.make_mesh()
  x = sharding.shard_batch(
      (np.random.default_rng(0).random((batch,) + SHAPE) < 0.3).astype(np.float32), mesh)
  variables = method.initial_variables(model, x, jax.random.key(0), None, mesh)
  state = jax.jit(lambda v: methods.state_from_variables(method, v),
                  out_shardings=sharding.replicated(mesh))(variables)
  from vaeprior_jax.train import trainer  # pylint: disable=g-import-not-at-top
  phase = method.phases()[0]
  compiled = {g: trainer.compile_train_step(f, mesh)
              for g, f in methods.phase_steps(model, method, phase).items()}
  steps = [compiled[g] for g in (phase.cycle or (phase.groups,))]
  return steps, state, x, sharding.replicate(jax.random.key(1), mesh), model, variables, mesh


def _time(steps, state, x, key, n):
  """Milliseconds per step over n passes through the cycle's steps (as the host loop calls them)."""
  for step in steps:  # Compile and warm up.
    state, _ = step(state, x, key)
  jax.block_until_ready(state)
  start = time.perf_counter()
  for _ in range(n):
    for step in steps:
      state, _ = step(state, x, key)
  jax.block_until_ready(state)
  return (time.perf_counter() - start) / (n * len(steps)) * 1e3, state


def main(argv):
  del argv
  batch, n = (8, 1) if _SMOKE.value else (_BATCH.value, _STEPS.value)
  entries = {'standard': 'standard,static_mnist', 'vaepp': 'vaepp,static_mnist',
             'naive': 'naive,static_mnist'}
  runs = {name: _step_fn(entry, batch) for name, entry in entries.items()}
  times = {name: [] for name in entries}
  states = {name: r[1] for name, r in runs.items()}
  for _ in range(3):  # Alternating rounds: the ratios come from one process, interleaved.
    for name, (step, _, x, key, *_rest) in runs.items():
      ms, states[name] = _time(step, states[name], x, key, n)
      times[name].append(ms)
  ms = {name: float(np.median(v)) for name, v in times.items()}

  _, _, _, _, model, variables, mesh = runs['vaepp']
  images = _LOG_Z_IMAGES.value if not _SMOKE.value else 8
  samples = _LOG_Z_SAMPLES.value if not _SMOKE.value else 4
  fn = normalizer.posterior_log_z_fn(model, samples, min(samples, 100))
  x = sharding.shard_batch(
      (np.random.default_rng(1).random((images,) + SHAPE) < 0.3).astype(np.float32), mesh)
  jax.block_until_ready(fn(variables, x, jax.random.key(2)))
  start = time.perf_counter()
  reps = 1 if _SMOKE.value else 3
  for i in range(reps):
    jax.block_until_ready(fn(variables, x, jax.random.key(3 + i)))
  per_second = reps * images * samples / (time.perf_counter() - start)
  print(json.dumps({
      'devices': [str(d) for d in jax.devices()], 'jax': jax.__version__, 'batch': batch,
      'ms_per_step': ms, 'ratio_vaepp_to_standard': ms['vaepp'] / ms['standard'],
      'ratio_naive_to_standard': ms['naive'] / ms['standard'],
      'log_z_samples_per_second': per_second, 'log_z_images': images,
      'log_z_samples_per_image': samples}, indent=2))


if __name__ == '__main__':
  app.run(main)
