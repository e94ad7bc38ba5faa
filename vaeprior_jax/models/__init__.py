"""The models: the one-level `VAE`, Tomczak & Welling's two-level `HierarchicalVAE` and Dai & Wipf's
`TwoStageVAE`, built from a `config.model` section by `create`."""

from vaeprior_jax.models import base
from vaeprior_jax.models import build
from vaeprior_jax.models import hierarchical
from vaeprior_jax.models import two_stage
from vaeprior_jax.models import vae
from vaeprior_jax.models.base import (LatentVariableModel, decode_images, init_variables,
                                      sample_images)
from vaeprior_jax.variables import as_variables, call_net
from vaeprior_jax.models.build import NETS, create, is_hierarchical, model_class, validate
from vaeprior_jax.models.hierarchical import HierarchicalVAE
from vaeprior_jax.models.two_stage import TwoStageVAE, second_stage_config
from vaeprior_jax.models.vae import VAE

__all__ = ['HierarchicalVAE', 'LatentVariableModel', 'NETS', 'TwoStageVAE', 'VAE', 'as_variables',
           'base', 'build', 'call_net', 'create', 'decode_images', 'hierarchical', 'init_variables',
           'is_hierarchical', 'model_class', 'sample_images', 'second_stage_config', 'two_stage', 'validate', 'vae']
