"""The CPU compiler options now live in `vaeprior_jax.cpu.xla_options`; this name is that same
module (the library's compiled functions go through `vaeprior_jax.compiled.jit`)."""

import sys

from vaeprior_jax.cpu import xla_options as _xla_options

sys.modules[__name__] = _xla_options
