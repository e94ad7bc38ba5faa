"""Normalising flows: RealNVP as in Xu et al. (2019), App. B.2, and planar flows (Rezende & Mohamed,
2015; VAEPP's "VAEPP + Flow").

Every flow maps z -> w with `forward_and_log_det(z) -> (w, log|det dw/dz|)` and back with
`inverse_and_log_det(w) -> (z, log|det dz/dw|)`. Inputs have shape [..., d]; log-determinants have
shape [...] (one per vector). The data-dependent initialisation of ActNorm runs on the first
`forward_and_log_det` call made during `init`, so a flow is initialised through its forward direction.
"""

from typing import Tuple

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp

from vaeprior_jax import config as config_lib
from vaeprior_jax.cpu import linalg

Array = jax.Array

# This component's config keys and their defaults (`config.declare`).
config_lib.declare(
    'RealNVP (model.prior or model.posterior=realnvp)',
    model=dict(
        flow_depth=20,  # K, RealNVP blocks (prior or posterior)
        flow_hidden_units=256,  # Dense[256] in each coupling layer
        flow_unroll=1,  # RealNVP blocks per loop iteration (flow_depth: no loop)
        coupling_scale_bias=2.0,  # scale = sigmoid(s + 2): each coupling starts near identity
    ),
)


gauss_jordan_inverse = linalg.gauss_jordan_inverse  # Also importable from here.


def log_abs_det(a: Array) -> Array:
  """log|det a| of [..., d, d] matrices, differentiable (gradient a^{-T}).

  On the CPU this is `cpu.linalg.gauss_jordan_inverse`, whose inverse also gives the derivative:
  inside a compiled step, jaxlib's LAPACK calls slowed the whole step (benchmarks/LOG.md). Elsewhere
  it is `jnp.linalg.slogdet` (cuSOLVER's batched LU on a GPU, XLA's on a TPU), where a d-step loop of small
  kernels would cost more than the solver.
  """
  return lax.platform_dependent(a, cpu=linalg.log_abs_det_gauss_jordan,
                                default=lambda m: jnp.linalg.slogdet(m)[1])


class ActNorm(nn.Module):
  """Per-dimension affine map with data-dependent initialisation (Kingma & Dhariwal, 2018).

  Forward: w = (z + b) * exp(s), log|det| = sum(s). At init, b = -mean(z) and s = -log(std(z)) over all
  leading axes of the init batch, so the init batch leaves the layer with zero mean and unit variance.
  """
  eps: float = 1e-6

  @nn.compact
  def _params(self, z: Array) -> Tuple[Array, Array]:
    axes = tuple(range(z.ndim - 1))
    bias = self.param('bias', lambda _: -jnp.mean(z, axis=axes))
    log_scale = self.param(
        'log_scale', lambda _: -jnp.log(jnp.std(z, axis=axes) + self.eps))
    return bias, log_scale

  def forward_and_log_det(self, z: Array) -> Tuple[Array, Array]:
    bias, log_scale = self._params(z)
    log_det = jnp.broadcast_to(jnp.sum(log_scale), z.shape[:-1])
    return (z + bias) * jnp.exp(log_scale), log_det

  def inverse_and_log_det(self, w: Array) -> Tuple[Array, Array]:
    bias, log_scale = self._params(w)
    log_det = jnp.broadcast_to(-jnp.sum(log_scale), w.shape[:-1])
    return w * jnp.exp(-log_scale) - bias, log_det


class InvertibleDense(nn.Module):
  """w = z W with a full d x d matrix W, initialised to a random orthogonal matrix.

  log|det dw/dz| = log|det W| (the dense analogue of Glow's invertible 1x1 convolution).
  """

  @nn.compact
  def _kernel(self, d: int) -> Array:
    return self.param('kernel', nn.initializers.orthogonal(), (d, d))

  def forward_and_log_det(self, z: Array) -> Tuple[Array, Array]:
    kernel = self._kernel(z.shape[-1])
    log_det = log_abs_det(kernel)
    return z @ kernel, jnp.broadcast_to(log_det, z.shape[:-1])

  def inverse_and_log_det(self, w: Array) -> Tuple[Array, Array]:
    kernel = self._kernel(w.shape[-1])
    log_det = -log_abs_det(kernel)
    return w @ jnp.linalg.inv(kernel), jnp.broadcast_to(log_det, w.shape[:-1])


class AffineCoupling(nn.Module):
  """Affine coupling layer with a sigmoid scale (Xu et al., App. B.2).

  Forward: u = [u_l, u_r] (u_l = the first floor(d/2) entries),
      w = [u_l, u_r * sigmoid(s(h) + scale_bias) + t(h)],  h = LeakyReLU(Dense[hidden_units](u_l)),
  log|det| = sum log sigmoid(s(h) + scale_bias). The heads s and t start at zero, so each coupling
  starts as a constant scaling by sigmoid(scale_bias).
  """
  hidden_units: int = 256
  scale_bias: float = 2.0
  negative_slope: float = 0.2

  @nn.compact
  def _shift_and_log_scale(self, u_l: Array, d_r: int) -> Tuple[Array, Array]:
    h = nn.leaky_relu(nn.Dense(self.hidden_units, name='hidden')(u_l), self.negative_slope)
    s = nn.Dense(d_r, kernel_init=nn.initializers.zeros, name='scale')(h)
    t = nn.Dense(d_r, kernel_init=nn.initializers.zeros, name='shift')(h)
    return t, jax.nn.log_sigmoid(s + self.scale_bias)

  def forward_and_log_det(self, z: Array) -> Tuple[Array, Array]:
    d_l = z.shape[-1] // 2
    u_l, u_r = z[..., :d_l], z[..., d_l:]
    shift, log_scale = self._shift_and_log_scale(u_l, u_r.shape[-1])
    w_r = u_r * jnp.exp(log_scale) + shift
    return jnp.concatenate([u_l, w_r], axis=-1), jnp.sum(log_scale, axis=-1)

  def inverse_and_log_det(self, w: Array) -> Tuple[Array, Array]:
    d_l = w.shape[-1] // 2
    u_l, w_r = w[..., :d_l], w[..., d_l:]
    shift, log_scale = self._shift_and_log_scale(u_l, w_r.shape[-1])
    u_r = (w_r - shift) * jnp.exp(-log_scale)
    return jnp.concatenate([u_l, u_r], axis=-1), -jnp.sum(log_scale, axis=-1)


class RealNVPBlock(nn.Module):
  """One block f_k: InvertibleDense -> AffineCoupling -> ActNorm.

  With `dense_log_det=False` the InvertibleDense term log|det W| (which does not depend on z) is left
  out of the returned log-determinant: `RealNVP` adds those of all its blocks at once.
  """
  hidden_units: int = 256
  scale_bias: float = 2.0
  negative_slope: float = 0.2
  dense_log_det: bool = True

  def setup(self):
    self.layers = (
        InvertibleDense(name='invertible_dense'),
        AffineCoupling(self.hidden_units, self.scale_bias, self.negative_slope, name='coupling'),
        ActNorm(name='actnorm'),
    )

  def forward_and_log_det(self, z: Array) -> Tuple[Array, Array]:
    log_det = jnp.zeros(z.shape[:-1], z.dtype)
    for layer in self.layers:
      if isinstance(layer, InvertibleDense) and not self.dense_log_det:
        z = z @ layer._kernel(z.shape[-1])  # pylint: disable=protected-access
        continue
      z, ld = layer.forward_and_log_det(z)
      log_det += ld
    return z, log_det

  def inverse_and_log_det(self, w: Array) -> Tuple[Array, Array]:
    log_det = jnp.zeros(w.shape[:-1], w.dtype)
    for layer in reversed(self.layers):
      if isinstance(layer, InvertibleDense) and not self.dense_log_det:
        w = w @ jnp.linalg.inv(layer._kernel(w.shape[-1]))  # pylint: disable=protected-access
        continue
      w, ld = layer.inverse_and_log_det(w)
      log_det += ld
    return w, log_det


def _scan_forward(block, carry, _):
  z, log_det = carry
  z, ld = block.forward_and_log_det(z)
  return (z, log_det + ld), None


def _scan_inverse(block, carry, _):
  w, log_det = carry
  w, ld = block.inverse_and_log_det(w)
  return (w, log_det + ld), None


class RealNVP(nn.Module):
  """f = f_K o ... o f_1, with K = `num_blocks` RealNVPBlocks.

  The blocks share one parameter tree with a leading axis of size K and run under `nn.scan`, so compile
  time does not grow with K. The inverse runs the same scan in reverse. The K InvertibleDense
  log-determinants, which do not depend on z, are computed outside the scan as one batched
  `log_abs_det` of the stacked [K, d, d] matrices (an LU factorisation inside each step of the loop
  costs a solver call per block on a GPU).
  """
  num_blocks: int
  hidden_units: int = 256
  scale_bias: float = 2.0
  negative_slope: float = 0.2
  unroll: int = 1  # blocks per iteration of the scan (num_blocks: no loop, longer compiles)

  def setup(self):
    if self.num_blocks < 1:
      raise ValueError(f'RealNVP needs num_blocks >= 1, got {self.num_blocks}.')
    self.blocks = RealNVPBlock(self.hidden_units, self.scale_bias, self.negative_slope,
                               dense_log_det=False)

  def _run(self, body, x: Array, reverse: bool) -> Tuple[Array, Array]:
    if x.shape[-1] < 2:
      raise ValueError(f'RealNVP needs at least 2 dimensions to couple, got shape {x.shape}.')
    scan = nn.scan(body, variable_axes={'params': 0}, split_rngs={'params': True},
                   length=self.num_blocks, reverse=reverse, unroll=max(1, self.unroll))
    (y, log_det), _ = scan(self.blocks, (x, jnp.zeros(x.shape[:-1], x.dtype)), None)
    kernels = self.variables['params']['blocks']['invertible_dense']['kernel']  # [K, d, d]
    dense_log_det = jnp.sum(log_abs_det(kernels))
    return y, log_det + (-dense_log_det if reverse else dense_log_det).astype(log_det.dtype)

  def forward_and_log_det(self, z: Array) -> Tuple[Array, Array]:
    """z [..., d] -> (w = f(z) [..., d], log|det df/dz| [...])."""
    return self._run(_scan_forward, z, reverse=False)

  def inverse_and_log_det(self, w: Array) -> Tuple[Array, Array]:
    """w [..., d] -> (z = f^{-1}(w) [..., d], log|det df^{-1}/dw| [...])."""
    return self._run(_scan_inverse, w, reverse=True)


class PlanarFlow(nn.Module):
  """`num_layers` planar layers w -> w + u_hat tanh(v . w + b) (Rezende & Mohamed, 2015, Sec. A.1).

  u_hat = u + (softplus(v . u) - 1 - v . u) v / |v|^2 makes v . u_hat >= -1, so each layer is
  invertible; log|det| = log|1 + u_hat . v (1 - tanh^2(v . w + b))| per layer. Parameters as in
  tfsnippet's `planar_normalizing_flows` (VAEPP's code): v and u ~ N(0, 0.01^2), b = 0, stacked over
  the layers ('v', 'u' [L, d], 'b' [L]); the layers run in a `lax.scan`. Only the forward direction
  exists (planar layers have no closed-form inverse), which is all a posterior needs.
  """
  num_layers: int

  @nn.compact
  def forward_and_log_det(self, w: Array) -> Tuple[Array, Array]:
    d = w.shape[-1]
    init = nn.initializers.normal(0.01)
    v = self.param('v', init, (self.num_layers, d), jnp.float32)
    u = self.param('u', init, (self.num_layers, d), jnp.float32)
    b = self.param('b', nn.initializers.zeros, (self.num_layers,), jnp.float32)

    def layer(h, params):
      v_l, u_l, b_l = params
      vu = jnp.dot(v_l, u_l)
      u_hat = u_l + (jax.nn.softplus(vu) - 1.0 - vu) * v_l / jnp.sum(jnp.square(v_l))
      a = jnp.tanh(h @ v_l + b_l)                                   # [...]
      h = h + a[..., None] * u_hat
      log_det = jnp.log(jnp.abs(1.0 + (1.0 - jnp.square(a)) * jnp.dot(u_hat, v_l)))
      return h, log_det

    out, log_dets = lax.scan(layer, w, (v, u, b))
    return out, jnp.sum(log_dets, axis=0)


def settings(model_config) -> dict:
  """A RealNVP's constructor arguments (but the latent size) from a `config.model` section: the same
  for the prior and the posterior."""
  mc = model_config
  return dict(num_blocks=mc.flow_depth, hidden_units=mc.flow_hidden_units,
              scale_bias=mc.coupling_scale_bias, negative_slope=mc.negative_slope,
              unroll=mc.flow_unroll)


def check_settings(model_config) -> None:
  """A RealNVP's settings in `config.model`: one-line errors for a latent size or depth it cannot
  have (a prior's or a posterior's `validate`)."""
  if model_config.latent_dim < 2:
    raise ValueError(f'A RealNVP needs model.latent_dim >= 2, got {model_config.latent_dim}.')
  if model_config.flow_depth < 1:
    raise ValueError(f'model.flow_depth must be >= 1 with a RealNVP, got {model_config.flow_depth}.')
