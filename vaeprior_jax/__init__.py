"""vaeprior_jax: variational auto-encoders with learned priors, in JAX/Flax."""

from vaeprior_jax import distributions
from vaeprior_jax import evaluation
from vaeprior_jax import flows
from vaeprior_jax import models
from vaeprior_jax import nets
from vaeprior_jax import posteriors
from vaeprior_jax import priors

__version__ = '0.1.0'

__all__ = ['distributions', 'evaluation', 'flows', 'models', 'nets', 'posteriors', 'priors']
