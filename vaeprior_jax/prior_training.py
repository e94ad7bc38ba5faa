"""The post-hoc and iterative prior training of Xu et al. now live in `methods.prior_fitting` (the
methods `post_hoc` and `iterative`); this module keeps the names code imported from here."""

from vaeprior_jax.methods.prior_fitting import (GROUPS, HIERARCHICAL_NETS, SHARED_FLOW_KEYS,
                                                SHARED_MODEL_KEYS, STRATEGIES, Phase,
                                                check_pretrained_config, describe, init_opt_state,
                                                init_prior_params, make_phase_step, merge_params,
                                                phase_of, plan, split_params, strategy, total_steps,
                                                validate)

__all__ = ['GROUPS', 'HIERARCHICAL_NETS', 'SHARED_FLOW_KEYS', 'SHARED_MODEL_KEYS', 'STRATEGIES',
           'Phase', 'check_pretrained_config', 'describe', 'init_opt_state', 'init_prior_params',
           'make_phase_step', 'merge_params', 'phase_of', 'plan', 'split_params', 'strategy',
           'total_steps', 'validate']
