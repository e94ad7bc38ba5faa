"""VAEPP's pull-back prior (`model.prior=pullback`): the module and its builder."""

from typing import Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from vaeprior_jax import config as config_lib
from vaeprior_jax import nets
from vaeprior_jax.priors.base import REGISTRY, PriorContext, check_latent
from vaeprior_jax.priors.pullback import evaluation
from vaeprior_jax.priors.pullback import latent_gan
from vaeprior_jax.priors.pullback import mala

Array = jax.Array

# This component's config keys and their defaults (`config.declare`).
config_lib.declare(
    'model.prior=pullback',
    model=dict(
        pullback_base='standard',  # prior=pullback (VAEPP): p_base(z) exp(-beta D(G(z))) / Z,
        pullback_weight=10.0,  # ... beta = W sigmoid(xi): W (code: 10 MNIST, 20 Fashion, 1000 colour)
        pullback_xi_init=0.0,  # ... xi's initial value
        discriminator='vaepp',  # ... D: nets.DISCRIMINATORS
        pullback_sample_start='base',  # ... prior samples: MALA from base draws | the latent WGAN's,
        pullback_mala_steps=0,  # ... MALA steps (0: none),
        pullback_mala_step_size=1e-5,  # ... and their size (code: 5e-5 static MNIST, 1e-5 MNIST)
        pullback_mala_adapt_steps=0,  # ... after this many tuning it (dual averaging; 0: fixed: the code)
        latent_gan_net='mlp',  # ... the latent WGAN (VAEPP's sampling): mlp | conv (the
        #     code's for colour images: z as an 8x8 map) | conv_4x4 (its critic ends on the
        #     4x4 map: CIFAR-10's Algorithm 1 script),
        latent_gan_noise_dim=0,  # ... its eps size (0: the latent size for mlp, 128 for conv),
        latent_gan_units=40,  # ... mlp: Dense width,
        latent_gan_generator_layers=5,  # ... hidden layers of the generator
        latent_gan_critic_layers=6,  # ... and of the critic
    ),
    eval=dict(
        log_z_samples=1000,  # prior=pullback: log Z from this many z ~ q(z|x) per image,
        log_z_max_images=0,  # ... over this many training images (0: all; seeded subset)
        log_z_chunk_size=100,
        log_z_prior_samples=100_000,  # ... and the prior-based check of it from this many eps ~ p_base
        log_z_ais_temperatures=0,  # > 0: also AIS lower and upper bounds on log Z (and the NLL)
        log_z_ais_chains=256,  # ... with this many chains each way,
        log_z_ais_sampler_steps=2000,  # ... after this many MALA steps on p for the reverse run
        log_z_ais_forward_smc=0,  # 1: the forward run as tempered SMC, the reverse from its particles
    ),
)


class PullbackPrior(nn.Module):
  """VAEPP's pull-back prior: p(z) = p_base(z) exp(-beta D(G(z))) / Z = f(z) / Z.

  `base` is any prior of the library (VAEPP: the standard normal), `discriminator` a critic D on
  data space ([B, H, W, C] -> [B], smaller = more like the data), G(z) the model's decoder mean
  (`ctx.decode_mean`), and beta = W sigmoid(xi) with W = `weight` a constant and xi a parameter
  (initialised at `xi_init`; 0 starts beta at W / 2), as in the authors' code.

  log Z is not a parameter: it is the non-trainable variable `partition/log_z` (0 at the start),
  which training and evaluation set from an estimate (`vaeprior_jax.priors.pullback.normalizer`); `log_prob` reads
  it, or the `log_z` passed in. `log_unnormalized` is log f(z) = log p_base(z) - beta D(G(z)).

  Sampling (VAEPP's Sec. 4.3): starting points z0 from `latent_generator` (the latent WGAN of
  `vaeprior_jax.priors.pullback.latent_gan`, trained after the VAE; `sample_start='gan'`) or from the base prior
  (`sample_start='base'`), then `mala_steps` MALA steps of size `mala_step_size` on log f; with
  `mala_adapt_steps` > 0, that many steps before them tune the size towards MALA's optimal
  acceptance rate (`vaeprior_jax.priors.pullback.mala`; 0: the size stays fixed, as in the authors' code).
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
    check_latent(z, self.latent_dim, type(self).__name__)
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


def _check(mc) -> None:
  """The pull-back prior's settings: one-line errors, before any data is loaded."""
  net = nets.REGISTRY.info(mc.net)
  if net.get('levels', 1) != 1 or net.get('autoregressive', False):
    raise ValueError(f'model.prior=pullback needs a one-level model with a non-autoregressive '
                     f'decoder (its density reads the decoder mean G(z)); got model.net='
                     f'{mc.net}.')
  if mc.pullback_base == 'pullback':
    raise ValueError('model.pullback_base cannot be pullback itself; allowed: any other prior.')
  REGISTRY.check(mc.pullback_base)
  nets.DISCRIMINATORS.check(mc.discriminator)
  config_lib.check_integer(mc.pullback_mala_adapt_steps, 'model.pullback_mala_adapt_steps', 0,
                           ' (0: a fixed step size)')
  if mc.pullback_sample_start not in ('gan', 'base'):
    raise ValueError(f'Unknown model.pullback_sample_start {mc.pullback_sample_start!r}; allowed: '
                     'gan, base.')
  if mc.latent_gan_net not in latent_gan.NETS:
    raise ValueError(f'Unknown model.latent_gan_net {mc.latent_gan_net!r}; allowed: '
                     f'{", ".join(latent_gan.NETS)}.')
  config_lib.check_integer(mc.latent_gan_noise_dim, 'model.latent_gan_noise_dim', 0,
                           " (0: the net's default)")
  check_base = REGISTRY.info(mc.pullback_base).get('validate')
  if check_base:
    check_base(mc)


def _pullback(mc, input_shape):
  base = REGISTRY.get(mc.pullback_base)(mc, input_shape)
  if mc.latent_gan_net in ('conv', 'conv_4x4'):
    latent_gan.conv_map_shape(mc.latent_dim)  # A latent size the map cannot hold fails here.
    generator = latent_gan.ConvGenerator(mc.latent_dim, mc.negative_slope)
    critic = latent_gan.ConvCritic(
        mc.latent_dim, mc.negative_slope,
        latent_gan.CONV_CRITIC if mc.latent_gan_net == 'conv' else latent_gan.CONV_CRITIC_4X4)
    noise_dim = mc.latent_gan_noise_dim or latent_gan.CONV_NOISE_DIM
  else:
    units = mc.latent_gan_units
    generator = latent_gan.MLP((units,) * mc.latent_gan_generator_layers, mc.latent_dim,
                               negative_slope=mc.negative_slope, out_activation=True)
    critic = latent_gan.MLP((units,) * mc.latent_gan_critic_layers, 1,
                            negative_slope=mc.negative_slope)
    noise_dim = mc.latent_gan_noise_dim or mc.latent_dim
  return PullbackPrior(
      base, nets.DISCRIMINATORS.get(mc.discriminator)(mc, input_shape), mc.pullback_weight,
      mc.pullback_xi_init, mc.pullback_mala_steps, mc.pullback_mala_step_size, generator, critic,
      mc.pullback_sample_start, mc.pullback_mala_adapt_steps, noise_dim)


REGISTRY.register('pullback', _pullback, validate=_check,
                  evaluation_hooks=evaluation.PullbackHooks())
