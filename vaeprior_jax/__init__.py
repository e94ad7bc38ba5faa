"""vaeprior_jax: variational auto-encoders with learned priors, in JAX/Flax.

Subpackages by role: `nets` (encoders and decoders), `priors`, `models` (VAE, two-level, two-stage),
`methods` (what trains, on which loss, in which phases), `train` (the loop, checkpoints' use, the
on-device loop, metric files), `evaluation` (likelihood estimators, the evaluation report, the
analyses, sample quality), `data`, and `cpu` (CPU-only speed-ups). Shared modules: `config`,
`registry`, `checkpoints`, `compiled`, `sharding`, `distributions`, `flows`, `likelihoods`,
`posteriors`.
"""

from vaeprior_jax import config
from vaeprior_jax import cpu
from vaeprior_jax.cpu import backends as _backends  # Registers model.conv_backend=onednn.
from vaeprior_jax import distributions
from vaeprior_jax import evaluation
from vaeprior_jax import flows
from vaeprior_jax import likelihoods
from vaeprior_jax import methods
from vaeprior_jax import models
from vaeprior_jax import nets
from vaeprior_jax import posteriors
from vaeprior_jax import priors
from vaeprior_jax import registry

del _backends
__version__ = '0.1.0'

__all__ = ['config', 'cpu', 'distributions', 'evaluation', 'flows', 'likelihoods', 'methods',
           'models', 'nets', 'posteriors', 'priors', 'registry']
