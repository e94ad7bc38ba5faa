"""The compiled train step and estimator lower for GPUs and TPUs, checked without either.

`jax.export` lowers a function for a platform that is not present. This catches, on the CPU, what
would otherwise first fail on a lent accelerator: a CPU-only path taken on every platform, a missing
lowering rule. Nothing is compiled or run here; the GPU and TPU numbers are benchmarks/LOG.md's.
"""

import functools
import re

import jax
from jax import export
import numpy as np
import pytest

from experiments.configs import tomczak2018
from experiments.configs import xu2019
from vaeprior_jax.evaluation import estimators
from vaeprior_jax import methods
from vaeprior_jax import models
from vaeprior_jax import sharding
from vaeprior_jax.train import device_loop
from vaeprior_jax.train import trainer

ENTRIES = (
    (xu2019, 'table1,dense,rnvp_prior'),
    (xu2019, 'table1,conv,rnvp_posterior'),
    (xu2019, 'table1,resnet,rnvp_prior'),
    (xu2019, 'table1,pixel,standard'),
    (tomczak2018, 'table1,vae,vampprior'),
    (tomczak2018, 'table2,hvae,mog'),
    (tomczak2018, 'table1,convhvae,vampprior'),
    (tomczak2018, 'table1,pixelhvae,standard'),
)
# What the RealNVP's batched log-determinant (flows.log_abs_det) must lower to off the CPU: the
# platform's LU, not the CPU's Gauss-Jordan loop.
LU_TARGETS = {'cuda': 'cusolver_getrf_ffi', 'tpu': 'LuDecomposition'}


def _custom_calls(exported) -> set:
  return set(re.findall(r'custom_call @([\w.]+)', exported.mlir_module()))


@pytest.mark.parametrize('module,entry', ENTRIES, ids=[e for _, e in ENTRIES])
def test_train_step_and_estimator_lower_for_gpu_and_tpu(module, entry):
  config = module.get_config(entry)
  shape = (28, 28, 1)
  model = models.create(config.model, shape)
  x = jax.ShapeDtypeStruct((8,) + shape, np.float32)
  optimizer = methods.joint.make_optimizer(config.train, 100)
  step = trainer.make_train_step(model, optimizer, config.train, 100)
  state = jax.eval_shape(lambda b: trainer.create_train_state(model, optimizer, b,
                                                               jax.random.key(0)), x)
  key = jax.eval_shape(lambda: jax.random.key(1))
  estimator = estimators.make_batch_metrics(model, 1000, 100).__wrapped__  # The plain function.
  flow = 'realnvp' in (config.model.prior, config.model.posterior)
  for platform in ('cuda', 'tpu'):
    lowered_step = export.export(jax.jit(step), platforms=[platform])(state, x, key)
    lowered_estimator = export.export(jax.jit(estimator), platforms=[platform])(
        state['params'], x, key)
    assert lowered_step.platforms == (platform,)
    calls = _custom_calls(lowered_step) | _custom_calls(lowered_estimator)
    assert not any(c.startswith('vaeprior_jax_onednn') for c in calls), calls
    assert (LU_TARGETS[platform] in calls) == flow, (platform, sorted(calls))


def test_on_device_loop_lowers_for_gpu_and_tpu():
  """`train.on_device`'s compiled loop (the GPU protocol's path): batches drawn and binarized on the
  device, DenseVAE + RealNVP steps, in one scan."""
  config = xu2019.get_config('table1,dense,rnvp_prior')
  mesh = sharding.make_mesh(jax.devices()[:1])
  images = np.random.default_rng(0).random((256, 28, 28, 1)).astype(np.float32)
  data = device_loop.DeviceData(images, 128, 0, True, mesh)
  model = models.create(config.model, images.shape[1:])
  optimizer = methods.joint.make_optimizer(config.train, data.steps_per_epoch)
  step = trainer.make_train_step(model, optimizer, config.train, data.steps_per_epoch)
  state = jax.eval_shape(lambda b: trainer.create_train_state(model, optimizer, b,
                                                               jax.random.key(0)), data.batch_at(0))
  key = jax.eval_shape(lambda: jax.random.key(1))
  loop = functools.partial(device_loop.scan_fn(step, data), length=3)
  for platform in ('cuda', 'tpu'):
    lowered = export.export(jax.jit(loop), platforms=[platform])(state, data.images, data.keys, key)
    assert LU_TARGETS[platform] in _custom_calls(lowered), platform
