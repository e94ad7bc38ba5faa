"""Milliseconds per compiled DenseVAE train step (the binaries' joint step, one device, batch 128),
for A/B runs between checkouts: run it from each checkout's root, alternating.

  python benchmarks/train_step_time.py standard|realnvp
"""
import sys, time, json
sys.path.insert(0, '.')
import jax, numpy as np
from experiments.configs import xu2019
from vaeprior_jax import methods
from vaeprior_jax import models
from vaeprior_jax import sharding
from vaeprior_jax.train import trainer

prior = sys.argv[1]
config = xu2019.get_config('table1,dense,rnvp_prior'); config.model.prior = prior
x = (np.random.default_rng(0).random((128, 28, 28, 1)) < 0.3).astype(np.float32)
model = models.create(config.model, (28, 28, 1)); mesh = sharding.make_mesh()
opt = methods.joint.make_optimizer(config.train, 390)
state = jax.jit(lambda b: trainer.create_train_state(model, opt, b, jax.random.key(0)), out_shardings=sharding.replicated(mesh))(x)
step = trainer.compile_train_step(trainer.make_train_step(model, opt, config.train, 390), mesh)
key = sharding.replicate(jax.random.key(1), mesh); xb = sharding.shard_batch(x, mesh)
for _ in range(20): state, m = step(state, xb, key)
jax.block_until_ready(state); t = time.perf_counter()
for _ in range(300): state, m = step(state, xb, key)
jax.block_until_ready(state); print(json.dumps({'prior': prior, 'ms_per_step': (time.perf_counter() - t) / 300 * 1e3, 'loss': float(m['loss'])}))
