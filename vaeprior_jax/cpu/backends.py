"""Registers the CPU's optional convolution backend, 'onednn', in `nets.CONV_BACKENDS` (imported by
the package, so `model.conv_backend=onednn` is always a known name; whether it can run here is
`unavailable_reason`, checked by `models.validate`)."""

import functools

from vaeprior_jax.cpu import conv_transpose
from vaeprior_jax.cpu import onednn
from vaeprior_jax import nets


def _stride1(x, kernel, padding):
  return onednn.conv(x, kernel, None, (1, 1), padding)


ONEDNN = nets.base.Convolutions(
    conv=onednn.Conv,
    stride1=_stride1,
    transpose_same=functools.partial(conv_transpose.per_phase, stride1_conv=_stride1),
    unavailable_reason=lambda: onednn.unavailable_reason() or '')

if 'onednn' not in nets.CONV_BACKENDS:
  nets.CONV_BACKENDS.register('onednn', ONEDNN)
