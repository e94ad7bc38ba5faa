"""Priors p(z), looked up by name (`model.prior`) in `REGISTRY` (see `priors.base` for the contract).

`base` (the registry, `PriorContext`, the standard normal), `realnvp` (Xu et al.), `mixtures` (MoG and
VampPrior, Tomczak & Welling), `pullback` (VAEPP's pull-back prior, its log Z and sampling); each
registers its priors on import.
"""

# Imported in the order the names are listed in errors and `REGISTRY.names()`.
# pylint: disable=g-bad-import-order
from vaeprior_jax.priors import base
from vaeprior_jax.priors import realnvp
from vaeprior_jax.priors import mixtures
from vaeprior_jax.priors.pullback import prior as _pullback_prior
from vaeprior_jax.priors.base import REGISTRY, PriorContext, StandardNormalPrior, create, from_config
from vaeprior_jax.priors.mixtures import MixtureOfGaussiansPrior, VampPrior, set_pseudo_inputs
from vaeprior_jax.priors.pullback.prior import PullbackPrior
from vaeprior_jax.priors.realnvp import RealNVPPrior
# pylint: enable=g-bad-import-order

del _pullback_prior

# The library's own priors (REGISTRY.names() also lists those user code registered).
PRIORS = ('standard', 'realnvp', 'mog', 'vampprior', 'vampprior_data', 'pullback')

__all__ = ['PRIORS', 'REGISTRY', 'MixtureOfGaussiansPrior', 'PriorContext', 'PullbackPrior',
           'RealNVPPrior', 'StandardNormalPrior', 'VampPrior', 'base', 'create', 'from_config',
           'mixtures', 'realnvp', 'set_pseudo_inputs']
