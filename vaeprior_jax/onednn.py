"""oneDNN's convolutions now live in `vaeprior_jax.cpu.onednn`; this name is that same module."""

import sys

from vaeprior_jax.cpu import onednn as _onednn

sys.modules[__name__] = _onednn
