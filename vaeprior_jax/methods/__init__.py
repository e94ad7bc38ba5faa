"""Training methods: what trains, on which loss, in which phases (see `methods.base`).

`train.method` names one of `REGISTRY` (the library's: joint, post_hoc, iterative, two_stage, vaepp,
vaepp_naive); user code registers its own with `REGISTRY.register(name, MethodClass)`.
"""

from vaeprior_jax.methods import base
from vaeprior_jax.methods import joint
from vaeprior_jax.methods import objectives
from vaeprior_jax.methods import prior_fitting
from vaeprior_jax.methods import two_stage
from vaeprior_jax.methods import vaepp
from vaeprior_jax.methods.base import (REGISTRY, Method, Phase, apply_model, from_config,
                                       make_phase_step, make_step,
                                       method_name, model_variables,
                                       phase_of, phase_steps, state_from_variables, validate)

__all__ = ['REGISTRY', 'Method', 'Phase', 'apply_model', 'base', 'from_config',
           'joint', 'make_phase_step', 'objectives', 'make_step', 'method_name', 'model_variables', 'phase_of',
           'phase_steps', 'prior_fitting', 'state_from_variables', 'two_stage', 'vaepp', 'validate']
