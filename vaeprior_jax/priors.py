"""Priors p(z): Flax modules with `log_prob(z, ctx=None) -> [...]` and
`sample(rng, num_samples, ctx=None) -> [num_samples, latent_dim]`.

`ctx` is the `PriorContext` a model passes to its prior: what the model offers a prior that is
defined through it (the VampPrior's components are the model's own q(z|u_k); a pull-back prior needs
the decoder). Priors with a density of their own ignore it, so they also work alone
(`prior.apply(variables, z, method='log_prob')`). Models call every prior the same way, never asking
which kind it is.

`model.prior` names a prior in `REGISTRY`; user code registers its own priors there (see `registry`).
"""

import dataclasses
from typing import Any, Callable, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from vaeprior_jax import config as config_lib
from vaeprior_jax import distributions
from vaeprior_jax import flows
from vaeprior_jax import latent_gan
from vaeprior_jax import mala
from vaeprior_jax import registry

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class PriorContext:
  """What a model offers its prior (fields are None where the model has no such part).

  encoder: x [..., H, W, C] -> (mean, log_std) of the Gaussian q(z|x) over the prior's latent (for the
    two-level model, q(z2|x)).
  decode_mean: z -> E[x|z] for the model's full latent z (non-autoregressive decoders).
  model: the bound model itself, for anything else (its other submodules and variables).
  """
  encoder: Optional[Callable[[Array], Tuple[Array, Array]]] = None
  decode_mean: Optional[Callable[[Array], Array]] = None
  model: Any = None


def _check_latent(z: Array, latent_dim: int, name: str):
  if z.shape[-1] != latent_dim:
    raise ValueError(f'{name} expects z of shape [..., {latent_dim}], got {z.shape}.')


class StandardNormalPrior(nn.Module):
  """p(z) = N(z; 0, I)."""
  latent_dim: int

  def log_prob(self, z: Array, ctx: Optional[PriorContext] = None) -> Array:
    del ctx
    _check_latent(z, self.latent_dim, type(self).__name__)
    return distributions.standard_normal_log_prob(z)

  def sample(self, rng: Array, num_samples: int, ctx: Optional[PriorContext] = None) -> Array:
    del ctx
    return jax.random.normal(rng, (num_samples, self.latent_dim))


class RealNVPPrior(nn.Module):
  """Learned prior p(z) = N(f(z); 0, I) |det df/dz| with f a RealNVP (Xu et al., Eq. 4).

  Sampling inverts the flow: w ~ N(0, I), z = f^{-1}(w).
  """
  latent_dim: int
  num_blocks: int
  hidden_units: int = 256
  scale_bias: float = 2.0
  negative_slope: float = 0.2
  unroll: int = 1

  def setup(self):
    self.flow = flows.RealNVP(self.num_blocks, self.hidden_units, self.scale_bias,
                              self.negative_slope, self.unroll)

  def log_prob(self, z: Array, ctx: Optional[PriorContext] = None) -> Array:
    del ctx
    _check_latent(z, self.latent_dim, type(self).__name__)
    w, log_det = self.flow.forward_and_log_det(z)
    return distributions.standard_normal_log_prob(w) + log_det

  def sample(self, rng: Array, num_samples: int, ctx: Optional[PriorContext] = None) -> Array:
    del ctx
    w = jax.random.normal(rng, (num_samples, self.latent_dim))
    return self.flow.inverse_and_log_det(w)[0]


class MixtureOfGaussiansPrior(nn.Module):
  """p(z) = (1/K) sum_k N(z; m_k, diag(s_k^2)) with learnable means and variances (Tomczak & Welling's
  MoG baseline). Means start as draws of N(0, I), standard deviations at 1."""
  latent_dim: int
  num_components: int

  def setup(self):
    self.means = self.param('means', nn.initializers.normal(1.0),
                            (self.num_components, self.latent_dim))
    self.log_stds = self.param('log_stds', nn.initializers.zeros,
                               (self.num_components, self.latent_dim))

  def log_prob(self, z: Array, ctx: Optional[PriorContext] = None) -> Array:
    del ctx
    _check_latent(z, self.latent_dim, type(self).__name__)
    return distributions.diag_normal_mixture_log_prob(z, self.means, self.log_stds)

  def sample(self, rng: Array, num_samples: int, ctx: Optional[PriorContext] = None) -> Array:
    del ctx
    return distributions.sample_diag_normal_mixture(rng, self.means, self.log_stds, num_samples)


class VampPrior(nn.Module):
  """The VampPrior (Tomczak & Welling, 2018): p(z) = (1/K) sum_k q(z|u_k), K pseudo-inputs u_k.

  The module holds the pseudo-inputs; the components q(z|u_k) come from the model's own encoder,
  `ctx.encoder` (`VAE.prior_log_prob` / `VAE.sample_prior` pass the model's context). The encoder's
  outputs for the pseudo-inputs, (means, log_stds) each [K, latent_dim], may also be passed directly
  in place of ctx: `log_prob(z, means, log_stds)`. The pseudo-inputs are kept in the data range [0, 1]
  by a hard tanh (clipping, as the paper's code). With `trainable=False` (the `vampprior_data`
  variant) they receive no gradient. With `init_from_data`, training starts them at K random training
  images (`set_pseudo_inputs`).
  """
  latent_dim: int
  num_components: int
  input_shape: Tuple[int, int, int]
  trainable: bool = True
  init_from_data: bool = False

  def setup(self):
    self.raw_pseudo_inputs = self.param(
        'pseudo_inputs', nn.initializers.uniform(1.0),
        (self.num_components,) + tuple(self.input_shape))

  def pseudo_inputs(self) -> Array:
    u = jnp.clip(self.raw_pseudo_inputs, 0.0, 1.0)
    return u if self.trainable else jax.lax.stop_gradient(u)

  def components(self, ctx) -> Tuple[Array, Array]:
    """(means, log_stds) [K, latent_dim] of q(z|u_k), through the context's encoder."""
    if ctx is None or ctx.encoder is None:
      raise ValueError('The VampPrior is defined through the model\'s encoder: call it through the '
                       'model (VAE.prior_log_prob, VAE.sample_prior) or pass a PriorContext.')
    return ctx.encoder(self.pseudo_inputs())

  def log_prob(self, z: Array, ctx=None, log_stds: Optional[Array] = None) -> Array:
    _check_latent(z, self.latent_dim, type(self).__name__)
    means, log_stds = (ctx, log_stds) if log_stds is not None else self.components(ctx)
    return distributions.diag_normal_mixture_log_prob(z, means, log_stds)

  def sample(self, rng: Array, num_samples: int, ctx=None,
             log_stds: Optional[Array] = None) -> Array:
    means, log_stds = (ctx, log_stds) if log_stds is not None else self.components(ctx)
    return distributions.sample_diag_normal_mixture(rng, means, log_stds, num_samples)


class PullbackPrior(nn.Module):
  """VAEPP's pull-back prior: p(z) = p_base(z) exp(-beta D(G(z))) / Z = f(z) / Z.

  `base` is any prior of the library (VAEPP: the standard normal), `discriminator` a critic D on
  data space ([B, H, W, C] -> [B], smaller = more like the data), G(z) the model's decoder mean
  (`ctx.decode_mean`), and beta = W sigmoid(xi) with W = `weight` a constant and xi a parameter
  (initialised at `xi_init`; 0 starts beta at W / 2), as in the authors' code.

  log Z is not a parameter: it is the non-trainable variable `partition/log_z` (0 at the start),
  which training and evaluation set from an estimate (`vaeprior_jax.partition`); `log_prob` reads
  it, or the `log_z` passed in. `log_unnormalized` is log f(z) = log p_base(z) - beta D(G(z)).

  Sampling (VAEPP's Sec. 4.3): starting points z0 from `latent_generator` (the latent WGAN of
  `vaeprior_jax.latent_gan`, trained after the VAE; `sample_start='gan'`) or from the base prior
  (`sample_start='base'`), then `mala_steps` MALA steps of size `mala_step_size` on log f; with
  `mala_adapt_steps` > 0, that many steps before them tune the size towards MALA's optimal
  acceptance rate (`vaeprior_jax.mala`; 0: the size stays fixed, as in the authors' code).
  """
  base: nn.Module
  discriminator: nn.Module
  weight: float
  xi_init: float = 0.0
  mala_steps: int = 0
  mala_step_size: float = 1e-5
  latent_generator: Optional[nn.Module] = None
  latent_critic: Optional[nn.Module] = None
  sample_start: str = 'gan'
  mala_adapt_steps: int = 0
  latent_noise_dim: int = 0   # The size of the latent generator's eps (0: the latent size).

  @property
  def latent_dim(self) -> int:
    return self.base.latent_dim

  @property
  def noise_dim(self) -> int:
    return self.latent_noise_dim or self.latent_dim

  def setup(self):
    self.xi = self.param('xi', nn.initializers.constant(self.xi_init), ())
    self.log_z = self.variable('partition', 'log_z', lambda: jnp.zeros((), jnp.float32))

  def beta(self) -> Array:
    return self.weight * jax.nn.sigmoid(self.xi)

  def critic(self, x: Array) -> Array:
    """D(x) for images [..., H, W, C] -> [...]."""
    batch_shape = x.shape[:-3]
    return self.discriminator(x.reshape((-1,) + x.shape[-3:])).reshape(batch_shape)

  def energy(self, z: Array, ctx: PriorContext) -> Array:
    """D(G(z)), [...] for z [..., d]."""
    if ctx is None or ctx.decode_mean is None:
      raise ValueError('The pull-back prior is defined through the model\'s decoder mean: call it '
                       'through the model (VAE.prior_log_prob, VAE.sample_prior) or pass a '
                       'PriorContext with decode_mean (the decoder must not be autoregressive).')
    return self.critic(ctx.decode_mean(z))

  def log_unnormalized(self, z: Array, ctx: PriorContext) -> Array:
    """log f(z) = log p_base(z) - beta D(G(z)), [...]."""
    _check_latent(z, self.latent_dim, type(self).__name__)
    return self.base.log_prob(z, ctx) - self.beta() * self.energy(z, ctx)

  def log_prob(self, z: Array, ctx: PriorContext = None, log_z: Optional[Array] = None) -> Array:
    """log f(z) - log Z, with log Z the stored estimate unless `log_z` is given."""
    if self.is_initializing() and self.latent_generator is not None:  # Create the GAN's variables.
      self.latent_critic(self.latent_generator(jnp.zeros((1, self.noise_dim))))
    log_z = self.log_z.value if log_z is None else log_z
    return self.log_unnormalized(z, ctx) - log_z

  def sample_base(self, rng: Array, num_samples: int, ctx: PriorContext = None) -> Array:
    return self.base.sample(rng, num_samples, ctx)

  def sample_gan(self, rng: Array, num_samples: int) -> Array:
    """z0 = G_w(eps), eps ~ N(0, I): the latent WGAN's samples, [num_samples, d]."""
    if self.latent_generator is None:
      raise ValueError('This pull-back prior has no latent generator.')
    return self.latent_generator(jax.random.normal(rng, (num_samples, self.noise_dim)))

  def sample_start_points(self, rng: Array, num_samples: int,
                          ctx: PriorContext = None) -> Array:
    """MALA's starting points: `sample_gan` or `sample_base`, by `sample_start`."""
    if self.sample_start == 'gan':
      return self.sample_gan(rng, num_samples)
    return self.sample_base(rng, num_samples, ctx)

  def mala(self, z0: Array, rng: Array, num_steps: int, step_size: float,
           ctx: PriorContext = None, **kwargs) -> mala.MALAResult:
    """MALA chains on p(z) (log f; Z cancels) from z0 [N, d]; see `mala.sample` for kwargs."""
    return mala.sample(lambda z: self.log_unnormalized(z[None], ctx)[0], z0, rng, num_steps,
                       step_size, **kwargs)

  def sample(self, rng: Array, num_samples: int, ctx: PriorContext = None) -> Array:
    return self.sample_with_chains(rng, num_samples, ctx)[0]

  def sample_with_chains(self, rng: Array, num_samples: int, ctx: PriorContext = None
                         ) -> Tuple[Array, Optional['mala.MALAResult']]:
    """(`sample`'s z [num_samples, d], the MALA chains' `MALAResult` or None without MALA steps):
    the acceptance rates and the step size used, for reports."""
    start_key, chain_key = jax.random.split(rng)
    z = self.sample_start_points(start_key, num_samples, ctx)
    if not self.mala_steps:
      return z, None
    chains = self.mala(z, chain_key, self.mala_steps, self.mala_step_size, ctx,
                       adapt_steps=self.mala_adapt_steps)
    return chains.samples, chains


def set_pseudo_inputs(params, images) -> dict:
  """Returns `params` with the VampPrior's pseudo-inputs replaced by `images` [K, H, W, C]."""
  old = params['prior']['pseudo_inputs']
  images = jnp.asarray(images, old.dtype)
  if images.shape != old.shape:
    raise ValueError(f'Pseudo-inputs must have shape {old.shape}, got {images.shape}.')
  return dict(params, prior=dict(params['prior'], pseudo_inputs=images))


# Builders: (model_config, input_shape) -> prior module; `model_config` is the `config.model` section.
REGISTRY = registry.Registry('model.prior')
# Builders of the pull-back prior's critic: (model_config, input_shape) -> module, [B, H, W, C] -> [B].
DISCRIMINATORS = registry.Registry('model.discriminator')


def _flow_settings(model_config) -> dict:
  mc = model_config
  return dict(num_blocks=mc.flow_depth, hidden_units=mc.flow_hidden_units,
              scale_bias=mc.coupling_scale_bias, negative_slope=mc.negative_slope,
              unroll=mc.flow_unroll)


REGISTRY.register('standard', lambda mc, input_shape: StandardNormalPrior(mc.latent_dim))
REGISTRY.register('realnvp', lambda mc, input_shape: RealNVPPrior(mc.latent_dim,
                                                                  **_flow_settings(mc)))
REGISTRY.register('mog', lambda mc, input_shape: MixtureOfGaussiansPrior(
    mc.latent_dim, mc.num_components))
REGISTRY.register('vampprior', lambda mc, input_shape: VampPrior(
    mc.latent_dim, mc.num_components, tuple(input_shape), True,
    bool(mc.pseudo_inputs_from_data)))
REGISTRY.register('vampprior_data', lambda mc, input_shape: VampPrior(
    mc.latent_dim, mc.num_components, tuple(input_shape), False, True))



def _pullback(mc, input_shape):
  if mc.pullback_base == 'pullback':
    raise ValueError('model.pullback_base cannot be pullback itself; allowed: any other prior.')
  REGISTRY.check(mc.pullback_base)
  DISCRIMINATORS.check(mc.discriminator)
  if not isinstance(mc.pullback_mala_adapt_steps, int) or mc.pullback_mala_adapt_steps < 0:
    raise ValueError('model.pullback_mala_adapt_steps must be an integer >= 0 (0: a fixed step '
                     f'size), got {mc.pullback_mala_adapt_steps!r}.')
  if mc.pullback_sample_start not in ('gan', 'base'):
    raise ValueError(f'Unknown model.pullback_sample_start {mc.pullback_sample_start!r}; allowed: '
                     'gan, base.')
  if mc.latent_gan_net not in latent_gan.NETS:
    raise ValueError(f'Unknown model.latent_gan_net {mc.latent_gan_net!r}; allowed: '
                     f'{", ".join(latent_gan.NETS)}.')
  if not isinstance(mc.latent_gan_noise_dim, int) or mc.latent_gan_noise_dim < 0:
    raise ValueError('model.latent_gan_noise_dim must be an integer >= 0 (0: the net\'s default), '
                     f'got {mc.latent_gan_noise_dim!r}.')
  base = REGISTRY.get(mc.pullback_base)(mc, input_shape)
  if mc.latent_gan_net == 'conv':
    latent_gan.conv_map_shape(mc.latent_dim)  # A latent size the map cannot hold fails here.
    generator = latent_gan.ConvGenerator(mc.latent_dim, mc.negative_slope)
    critic = latent_gan.ConvCritic(mc.latent_dim, mc.negative_slope)
    noise_dim = mc.latent_gan_noise_dim or latent_gan.CONV_NOISE_DIM
  else:
    units = mc.latent_gan_units
    generator = latent_gan.MLP((units,) * mc.latent_gan_generator_layers, mc.latent_dim,
                               negative_slope=mc.negative_slope)
    critic = latent_gan.MLP((units,) * mc.latent_gan_critic_layers, 1,
                            negative_slope=mc.negative_slope)
    noise_dim = mc.latent_gan_noise_dim or mc.latent_dim
  return PullbackPrior(
      base, DISCRIMINATORS.get(mc.discriminator)(mc, input_shape), mc.pullback_weight,
      mc.pullback_xi_init, mc.pullback_mala_steps, mc.pullback_mala_step_size, generator, critic,
      mc.pullback_sample_start, mc.pullback_mala_adapt_steps, noise_dim)


REGISTRY.register('pullback', _pullback)

# The library's own priors (REGISTRY.names() also lists those user code registered).
PRIORS = ('standard', 'realnvp', 'mog', 'vampprior', 'vampprior_data', 'pullback')


def from_config(model_config, input_shape: Tuple[int, ...]) -> nn.Module:
  """The prior named by `model_config.prior`, from REGISTRY (missing keys from `config.defaults`)."""
  model_config = config_lib.complete_section(model_config, 'model')
  return REGISTRY.get(model_config.prior)(model_config, tuple(input_shape))


def create(name: str, latent_dim: int, flow_depth: int, flow_hidden_units: int = 256,
           flow_unroll: int = 1,
           scale_bias: float = 2.0, negative_slope: float = 0.2, num_components: int = 500,
           input_shape: Tuple[int, int, int] = (28, 28, 1)) -> nn.Module:
  """Builds the prior called `name` (a name of REGISTRY) from explicit settings."""
  if name not in REGISTRY:
    raise ValueError(f'Unknown prior {name!r}; allowed: {", ".join(REGISTRY.names())}.')
  import ml_collections  # pylint: disable=g-import-not-at-top
  model_config = ml_collections.ConfigDict(dict(
      prior=name, latent_dim=latent_dim, flow_depth=flow_depth,
      flow_hidden_units=flow_hidden_units, flow_unroll=flow_unroll, coupling_scale_bias=scale_bias,
      negative_slope=negative_slope, num_components=num_components))
  return from_config(model_config, input_shape)
