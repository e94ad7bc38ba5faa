"""Encoder and decoder networks, looked up by name (`model.net`) in `REGISTRY`.

`base` holds the registries (nets, data-space critics, convolution backends) and the layers several
papers' nets share; each paper's nets are in their own module, which registers them on import:
`xu_nets` (dense, conv, resnet, pixel), `tomczak_nets` (gated_mlp, hvae, convhvae, pixelhvae),
`dai_nets` (infogan, dai_resnet, second_stage), `vaepp_nets` (vaepp, vaepp_cifar, vaepp_sampling and
their critics); `pixelcnn` the PixelCNN layers two of them use. User code registers its own builders
in `REGISTRY` (see `vaeprior_jax.registry`).
"""

# Imported in the order the names are listed in errors and `REGISTRY.names()`.
# pylint: disable=g-bad-import-order
from vaeprior_jax.nets import base
from vaeprior_jax.nets import pixelcnn
from vaeprior_jax.nets import xu_nets
from vaeprior_jax.nets import tomczak_nets
from vaeprior_jax.nets import dai_nets
from vaeprior_jax.nets import vaepp_nets
from vaeprior_jax.nets.base import CONV_BACKENDS, DISCRIMINATORS, REGISTRY
# pylint: enable=g-bad-import-order

__all__ = ['CONV_BACKENDS', 'DISCRIMINATORS', 'REGISTRY', 'base', 'dai_nets', 'pixelcnn',
           'tomczak_nets', 'vaepp_nets', 'xu_nets']
