"""FLOPs of a JAX function counted from its jaxpr: matrix products and convolutions, loops included.

XLA's cost analysis counts a while loop's body once (it does not know the trip count in general), so
a RealNVP under `nn.scan` would be undercounted; here `scan` bodies are multiplied by their length.
Only dot_general and conv_general_dilated, and the oneDNN backend's convolution custom calls
(`vaeprior_jax.cpu.onednn`), are counted (2 FLOPs per multiply-add): element-wise work is small beside
them in these models and is left out, so the count is a lower bound.
"""

import math
from typing import Any, Callable

import jax
from jax import core as jax_core

try:  # jax >= 0.4.36 moved the jaxpr types; keep both spellings.
  from jax.extend import core as jex_core  # pylint: disable=g-import-not-at-top
  _ClosedJaxpr = jex_core.ClosedJaxpr
  _Jaxpr = jex_core.Jaxpr
except (ImportError, AttributeError):  # pragma: no cover
  _ClosedJaxpr = jax_core.ClosedJaxpr
  _Jaxpr = jax_core.Jaxpr


def _dot_flops(eqn) -> float:
  lhs = eqn.invars[0].aval
  (lhs_contract, _), _ = eqn.params['dimension_numbers']
  contracted = math.prod(lhs.shape[d] for d in lhs_contract)
  out = eqn.outvars[0].aval
  return 2.0 * math.prod(out.shape) * contracted


def _conv_flops(eqn) -> float:
  rhs = eqn.invars[1].aval
  dn = eqn.params['dimension_numbers']
  out = eqn.outvars[0].aval
  # rhs_spec = (out feature dim, in feature dim, spatial dims...) of the kernel.
  rhs_spec = dn.rhs_spec
  kernel_in = rhs.shape[rhs_spec[1]]
  kernel_spatial = math.prod(rhs.shape[d] for d in rhs_spec[2:])
  return 2.0 * math.prod(out.shape) * kernel_in * kernel_spatial


def _onednn_flops(eqn) -> float:
  """A oneDNN convolution custom call: 2 x (output or dy elements) x kh kw C, as its lax analogue."""
  target = str(eqn.params.get('target_name', ''))
  if not target.startswith('vaeprior_jax_onednn_conv_'):
    return 0.0
  if target.endswith('_fwd'):  # (x, kernel [kh, kw, C, F]) -> y
    images, (kh, kw, c, _) = eqn.outvars[0].aval, eqn.invars[1].aval.shape
  elif target.endswith('_bwd_data'):  # (dy, kernel) -> dx
    images, (kh, kw, c, _) = eqn.invars[0].aval, eqn.invars[1].aval.shape
  else:  # (x, dy) -> (dkernel [kh, kw, C, F], dbias)
    images, (kh, kw, c, _) = eqn.invars[1].aval, eqn.outvars[0].aval.shape
  return 2.0 * math.prod(images.shape) * kh * kw * c


def _sub_jaxprs(eqn):
  for value in eqn.params.values():
    for v in (value if isinstance(value, (tuple, list)) else (value,)):
      if isinstance(v, _ClosedJaxpr):
        yield v.jaxpr
      elif isinstance(v, _Jaxpr):
        yield v


def count_jaxpr(jaxpr) -> float:
  total = 0.0
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == 'dot_general':
      total += _dot_flops(eqn)
    elif name == 'conv_general_dilated':
      total += _conv_flops(eqn)
    elif name == 'ffi_call':
      total += _onednn_flops(eqn)
    elif name == 'scan':
      total += eqn.params['length'] * count_jaxpr(eqn.params['jaxpr'].jaxpr)
    elif name == 'while':
      # Trip counts are unknown here; fori_loops with static bounds are scans in jaxprs.
      total += count_jaxpr(eqn.params['body_jaxpr'].jaxpr)
    elif name == 'cond':
      total += max(count_jaxpr(b.jaxpr) for b in eqn.params['branches'])
    else:
      total += sum(count_jaxpr(sub) for sub in _sub_jaxprs(eqn))
  return total


def count(fn: Callable, *args: Any, **kwargs: Any) -> float:
  """FLOPs of matrix products and convolutions in fn(*args, **kwargs) (jitted functions too)."""
  return count_jaxpr(jax.make_jaxpr(fn)(*args, **kwargs).jaxpr)
