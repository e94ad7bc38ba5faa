"""vaeprior_jax: variational auto-encoders with learned priors, in JAX/Flax."""

from vaeprior_jax import config
from vaeprior_jax import cpu
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
from vaeprior_jax.cpu import backends as _backends  # Registers model.conv_backend=onednn.

del _backends
__version__ = '0.1.0'

__all__ = ['config', 'cpu', 'distributions', 'evaluation', 'flows', 'likelihoods', 'methods',
           'models', 'nets', 'posteriors', 'priors', 'registry']
