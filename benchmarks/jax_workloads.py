"""The JAX side of the benchmarks: the library's own train step, estimator and on-device loop, built
exactly as the binaries build them, on random binary images (speed does not depend on the pixels)."""

import time
from typing import Callable, Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np

from experiments.configs import xu2019
from vaeprior_jax.cpu import xla_options
from vaeprior_jax.evaluation import estimators
from vaeprior_jax import methods
from vaeprior_jax import models
from vaeprior_jax import sharding
from vaeprior_jax.train import device_loop
from vaeprior_jax.train import trainer

SHAPE = (28, 28, 1)


def config_for(net: str, prior: str, flow_depth: int = 20, batch_size: int = 128,
               conv_backend: str = 'xla'):
  """An xu2019 config (the paper's protocol) for `net` with the standard or RealNVP prior."""
  config = xu2019.get_config(f'table1,{net},{"rnvp_prior" if prior == "realnvp" else "standard"}')
  config.model.flow_depth = flow_depth
  config.model.conv_backend = conv_backend
  config.train.batch_size = batch_size
  config.train.warmup_epochs = 100.0
  return config


def random_images(n: int, seed: int = 0) -> np.ndarray:
  return (np.random.default_rng(seed).random((n,) + SHAPE) < 0.3).astype(np.float32)


def train_steps_per_window(net: str) -> int:
  """Train steps per timed window: enough for ~0.3-1 s on the default backend."""
  if jax.default_backend() != 'cpu':
    return 200 if net == 'dense' else 50
  return 40 if net == 'dense' else 3


def time_windows(run_window: Callable[[], None], num_windows: int, warmup_windows: int = 1):
  """Seconds of each of `num_windows` calls of run_window (which must block until done)."""
  for _ in range(warmup_windows):
    run_window()
  times = []
  for _ in range(num_windows):
    start = time.perf_counter()
    run_window()
    times.append(time.perf_counter() - start)
  return times


def alternating_windows(num_windows: int, *window_fns: Callable[[], None]):
  """Seconds of each window_fn over `num_windows` rounds, run in turn within each round (so that the
  machine's drift hits every workload alike): one list per function."""
  times = [[] for _ in window_fns]
  for _ in range(num_windows):
    for fn, out in zip(window_fns, times):
      start = time.perf_counter()
      fn()
      out.append(time.perf_counter() - start)
  return times


def memory_of(compiled) -> Dict[str, float]:
  """XLA's buffer assignment of a compiled function, in MiB (peak = arguments + outputs + temporaries
  - donated/aliased)."""
  ma = compiled.memory_analysis()
  if ma is None:
    return {}
  mib = lambda b: float(b) / 2 ** 20
  return {'temp_mib': mib(ma.temp_size_in_bytes), 'argument_mib': mib(ma.argument_size_in_bytes),
          'output_mib': mib(ma.output_size_in_bytes),
          'xla_peak_mib': mib(ma.argument_size_in_bytes + ma.output_size_in_bytes +
                              ma.temp_size_in_bytes - ma.alias_size_in_bytes)}


def device_peak_mib() -> Optional[float]:
  """The first local device's peak memory in use since the process started (None where the backend
  does not say, as on the CPU): it is never reset, so it covers everything run before."""
  stats = jax.local_devices()[0].memory_stats()
  if not stats or 'peak_bytes_in_use' not in stats:
    return None
  return stats['peak_bytes_in_use'] / 2 ** 20


def xla_flops(compiled) -> Optional[float]:
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else None
  return float(analysis['flops']) if analysis and 'flops' in analysis else None


class TrainWorkload:
  """The binaries' jitted train step (warm-up ELBO + L2, Adam) on a device-resident batch."""

  def __init__(self, config, mesh=None, seed: int = 0):
    self.config = config
    self.mesh = mesh or sharding.make_mesh(jax.devices()[:1])
    self.model = models.create(config.model, SHAPE)
    tc = config.train
    self.batch_size = tc.batch_size
    per_epoch = 390
    optimizer = methods.joint.make_optimizer(tc, per_epoch)
    step_fn = trainer.make_train_step(self.model, optimizer, tc, per_epoch)
    self.step_fn = step_fn
    batch = random_images(self.batch_size, seed)
    self.batch = sharding.shard_batch(batch, self.mesh)
    self.key = sharding.replicate(jax.random.key(seed + 1), self.mesh)
    self.state = jax.jit(lambda b: trainer.create_train_state(self.model, optimizer, b,
                                                               jax.random.key(seed)),
                         out_shardings=sharding.replicated(self.mesh))(batch)
    self.jitted = trainer.compile_train_step(step_fn, self.mesh)
    start = time.perf_counter()
    self.compiled = self.jitted.lower(self.state, self.batch, self.key).compile()
    self.compile_seconds = time.perf_counter() - start

  def flops_per_step(self):
    from benchmarks import flops  # pylint: disable=g-import-not-at-top
    return flops.count(self.step_fn, self.state, self.batch, self.key)

  def run(self, num_steps: int):
    for _ in range(num_steps):
      self.state, metrics = self.compiled(self.state, self.batch, self.key)
    jax.block_until_ready(metrics['loss'])


def init_params(model, images: np.ndarray, mesh, seed: int = 0):
  """Random-init parameters of `model` (initialised on `images`), replicated over `mesh`."""
  return jax.jit(lambda b: model.init(jax.random.key(seed), b, jax.random.key(1))['params'],
                 out_shardings=sharding.replicated(mesh))(images)


class NLLWorkload:
  """The K-sample estimator of `estimators.make_batch_metrics` on one test batch."""

  def __init__(self, config, num_samples: int, chunk_size: int, batch_size: int = 128,
               seed: int = 0, mesh=None):
    self.mesh = mesh or sharding.make_mesh(jax.devices()[:1])
    self.model = models.create(config.model, SHAPE)
    x = random_images(batch_size, seed)
    self.params = init_params(self.model, x, self.mesh, seed)
    self.x = sharding.shard_batch(x, self.mesh)
    self.key = jax.random.key(seed + 2)
    self.batch_size = batch_size
    self.num_samples = num_samples
    fn = estimators.make_batch_metrics(self.model, num_samples, chunk_size)
    self.fn = fn
    start = time.perf_counter()
    self.compiled = fn.lower(self.params, self.x, self.key).compile()
    self.compile_seconds = time.perf_counter() - start

  def flops_per_batch(self):
    from benchmarks import flops  # pylint: disable=g-import-not-at-top
    return flops.count(self.fn, self.params, self.x, self.key)

  def run(self, num_batches: int = 1):
    for i in range(num_batches):
      out = self.compiled(self.params, self.x, jax.random.fold_in(self.key, i))
    jax.block_until_ready(out['log_likelihood'])


def split_nll(config, images: np.ndarray, num_samples: int, chunk_size: int, batch_size: int,
              mesh=None, seed: int = 0, on_compiled: Optional[Callable[[], object]] = None):
  """The binaries' whole-split evaluation (`estimators.split_metrics`) of random-init parameters:
  (seconds, metrics). The estimate itself is meaningless for untrained parameters; its cost is not.
  `on_compiled` is called after compilation and one warm-up batch, just before the timed run."""
  mesh = mesh or sharding.make_mesh()
  model = models.create(config.model, SHAPE)
  params = init_params(model, images[:8], mesh, seed)
  batch_metrics = estimators.make_batch_metrics(model, num_samples, chunk_size)
  batch_size = sharding.round_up_to_devices(batch_size, mesh)
  # Compile outside the timed region, on one batch.
  jax.block_until_ready(batch_metrics(params, sharding.shard_batch(images[:batch_size], mesh),
                                      jax.random.key(0)))
  if on_compiled is not None:
    on_compiled()
  start = time.perf_counter()
  metrics = estimators.split_metrics(batch_metrics, params, images, jax.random.key(3), mesh,
                                     batch_size)
  return time.perf_counter() - start, metrics


class DeviceLoopWorkload:
  """`train.on_device`: whole chunks of steps in one compiled scan over device-resident images;
  `steps_per_call` steps per call, by default one epoch of `num_examples`."""

  def __init__(self, config, num_examples: int = 50000, steps_per_call: Optional[int] = None,
               mesh=None, seed: int = 0, binarize: bool = False):
    self.mesh = mesh or sharding.make_mesh()
    self.model = models.create(config.model, SHAPE)
    tc = config.train
    images = random_images(num_examples, seed)
    self.data = device_loop.DeviceData(images, tc.batch_size, seed, binarize, self.mesh)
    per_epoch = self.data.steps_per_epoch
    optimizer = methods.joint.make_optimizer(tc, per_epoch)
    self.loop = device_loop.make_loop(trainer.make_train_step(self.model, optimizer, tc,
                                                               per_epoch), self.data)
    self.state = jax.jit(lambda b: trainer.create_train_state(self.model, optimizer, b,
                                                               jax.random.key(seed)),
                         out_shardings=sharding.replicated(self.mesh))(self.data.batch_at(0))
    self.key = sharding.replicate(jax.random.key(seed + 1), self.mesh)
    self.steps_per_call = steps_per_call or per_epoch
    self.batch_size = tc.batch_size
    start = time.perf_counter()
    self.run(1)
    self.compile_seconds = time.perf_counter() - start

  def run(self, num_calls: int = 1, chunk_steps: int = 0):
    """`num_calls` runs of `steps_per_call` steps. With `chunk_steps`, each run is split as the
    trainer splits it (`train.device_chunk_steps`): loops of at most that many steps, the host
    waiting for the one before before it goes on."""
    for _ in range(num_calls):
      if not chunk_steps:
        self.state, metrics = self.loop(self.state, self.key, self.steps_per_call)
        continue
      previous = None
      for start in range(0, self.steps_per_call, chunk_steps):
        self.state, metrics = self.loop(self.state, self.key,
                                        min(chunk_steps, self.steps_per_call - start))
        if previous is not None:
          jax.block_until_ready(previous)
        previous = metrics
    jax.block_until_ready(metrics['loss'])


def profile_summary(run: Callable[[], None], top: int = 20) -> Dict[str, dict]:
  """Traces one call of `run` with jax.profiler and sums its events by name, per profiler plane
  (on a GPU '/device:GPU:0' holds the kernels, on the CPU '/host:CPU' the XLA ops): for each plane
  the number of events, their total milliseconds and the `top` names by total time as
  [name, count, ms]. Python's functions are not traced. Events nest on the CPU (an executor's
  event spans its ops), so totals there count some time twice."""
  import collections  # pylint: disable=g-import-not-at-top
  import glob  # pylint: disable=g-import-not-at-top
  import tempfile  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory() as folder:
    options = jax.profiler.ProfileOptions()
    options.python_tracer_level = 0
    jax.profiler.start_trace(folder, profiler_options=options)
    try:
      run()
    finally:
      jax.profiler.stop_trace()
    files = glob.glob(f'{folder}/**/*.xplane.pb', recursive=True)
    if not files:
      return {}
    data = jax.profiler.ProfileData.from_file(files[0])
    summary = {}
    for plane in data.planes:
      totals, counts = collections.Counter(), collections.Counter()
      for line in plane.lines:
        for event in line.events:
          totals[event.name] += event.duration_ns / 1e6
          counts[event.name] += 1
      if counts:
        summary[plane.name] = {
            'events': sum(counts.values()), 'total_ms': sum(totals.values()),
            'top': [[name, counts[name], ms] for name, ms in totals.most_common(top)]}
    return summary


def matmul_peak(size: int, dtype=jnp.float32, num_windows: int = 5,
                library_options: bool = False) -> float:
  """Dense matrix-product FLOP/s of this device (median of timed windows of 10 products), compiled
  with XLA's defaults or with the library's options (`xla_options.jit`)."""
  a = jax.random.normal(jax.random.key(0), (size, size), dtype)
  b = jax.random.normal(jax.random.key(1), (size, size), dtype)
  f = (xla_options.jit if library_options else jax.jit)(lambda a_, b_: a_ @ b_)
  jax.block_until_ready(f(a, b))

  def window():
    for _ in range(10):
      out = f(a, b)
    jax.block_until_ready(out)

  return 10 * 2.0 * size ** 3 / float(np.median(time_windows(window, num_windows)))
