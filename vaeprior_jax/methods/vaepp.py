"""VAEPP's training (`train.method=vaepp` or `vaepp_naive`, with `model.prior=pullback`): a VAE phase,
then a latent-WGAN phase for sampling, over one global step.

Parameter groups: 'vae' (encoder, posterior, decoder, the prior's xi and base prior), 'critic' (the
prior's discriminator D), 'latent_critic' and 'latent_generator' (the latent WGAN of
`vaeprior_jax.priors.pullback.latent_gan`).

VAE phase, `train.num_epochs` (or `train.num_steps`), on each batch x (encoder input and target):
  z ~ q(z|x) (one per example), eps_1..eps_P ~ p_base (P = `train.vaepp_prior_samples`, 128),
  log f(z) = log p_base(z) - beta D(G(z)),
  log Z_batch = log of the mean of two estimates (the code's log-mean-exp of the pair; the paper's
    average, the same thing): the prior-based mean_s exp(-beta D(G(eps_s))) and the posterior-based
    mean_i f(z_i) / (q(z_i|x_i) / N), N the training set's real size (the code hard-codes 50,000),
  KL~ = max(mean_i [log q(z_i|x_i) - log f(z_i)] + log Z_batch, 0)  (the code's clamp),
  R = gradient penalty of D (`penalties`, `train.gradient_penalty`) between x and G(eps) (paired
    by index), scaled by W (the code's constant `pull_back_energy_weight`) or, with
    `train.vaepp_penalty_scale=beta`, by beta (the paper's Eq. 9 and Algorithm 2), or with `one`
    not at all (CIFAR-10's Algorithm 1 script, `dmm_cifar10_nD.py`),
  loss = -mean_i log p(x_i|z_i) + KL~ + scale R + l2_reg L2 (the residual blocks' kernels).
  vaepp        (Algorithm 2, the default): one step over 'vae' and 'critic' together on that loss.
  vaepp_naive  (Algorithm 1): updates of 'vae' on the loss without R and of 'critic' on
               mean D(x) - mean D(G(eps)) + scale R (the code's `VAE_D_loss`; the paper's Algorithm
               1 writes the opposite sign, which would score generated images as real); the
               critic's Adam has beta1 = 0.5, and its step has no L2 (the code's `_nD` scripts
               leave the regulariser out of `VAE_D_loss`; `train.vaepp_naive_critic_l2=True`
               adds l2_reg L2 of D's kernels). As the code (`train.vaepp_naive_same_batch`, the
               default): every step one 'vae' update, then one 'critic' update on the same batch.
               As the paper's Algorithm 1 (`vaepp_naive_same_batch=False`):
               `train.vaepp_naive_vae_steps` (n_c) steps of 'vae', then one of 'critic', each on its
               own batch.
Both: Adam at `train.learning_rate` (1e-4), times `train.lr_decay_factor` (0.5) at each of
`train.lr_decay_epochs`.

Latent-WGAN phase, `train.latent_gan_epochs` (0: none): the VAE frozen; a cycle of
`train.latent_gan_critic_steps` (5) critic steps, each on a batch, then one generator step (its
batch unused), so the phase has latent_gan_epochs x steps_per_epoch x (c + 1) / c steps and the critic
sees latent_gan_epochs epochs, as in the code. Adam(beta1 = 0.5), the learning rate back at
`train.learning_rate` and decayed at the `train.lr_decay_epochs` after the VAE phase (the code's
schedule over global epochs).

The stored log Z of the prior (`partition/log_z`) is not used by the training loss (the batch
estimate is). It is set from the posterior-based estimate over the training split
(`normalizer.refresh_log_z`, with the `eval.log_z_*` settings) every `train.log_z_every_epochs`
(0: never; the code: at its test epochs, 500 or 1,000), before every early-stopping validation, and
by `evaluate` before every evaluation; the value and its standard error are logged as `log_z`,
`log_z_stderr`.
"""

import math

import jax
import jax.numpy as jnp
import optax

from vaeprior_jax import config as config_lib
from vaeprior_jax.methods import base
from vaeprior_jax.methods import joint
from vaeprior_jax.methods import objectives
from vaeprior_jax import models
from vaeprior_jax.priors.pullback import latent_gan
from vaeprior_jax.priors.pullback import penalties

# This component's config keys and their defaults (`config.declare`).
config_lib.declare(
    'train.method=vaepp|vaepp_naive',
    resumable=('train.latent_gan_epochs', 'train.log_z_every_epochs'),
    train=dict(
        gradient_penalty='wgan_div_1',  # method=vaepp|vaepp_naive: penalties.KINDS,
        gradient_penalty_weight=0.0,  # ... its weight (0: the kind's, 10 GP / 2 div),
        gradient_penalty_exponent=0.0,  # ... on the gradient norm (0: the code's, 2 / 3 / 6)
        vaepp_penalty_scale='weight',  # ... R scaled by W (code) | beta (paper) | one (unscaled:
        #     CIFAR-10's Algorithm 1 script)
        vaepp_prior_samples=128,  # ... eps ~ p_base per step (log Z_batch, the penalty's fakes)
        vaepp_naive_same_batch=True,  # ... vaepp_naive: each step a VAE update, then a critic
        #     update on the same batch (the code) | False: the paper's Algorithm 1, below
        vaepp_naive_vae_steps=5,  # ... vaepp_naive, same_batch=False: VAE steps per critic step
        vaepp_naive_critic_l2=False,  # ... vaepp_naive: L2 in the critic's own step (code: none)
        latent_gan_epochs=0.0,  # ... the latent WGAN after the VAE (0: none),
        latent_gan_critic_steps=5,  # ... critic steps per generator step,
        latent_gan_real='mean',  # ... its real latents: posterior means | samples (flows)
        latent_gan_penalty_weight=0.0,  # ... its penalty's weight (0: the kind's; latent space
        #     has no change of coordinates, so not gradient_penalty_weight)
        log_z_every_epochs=0.0,  # ... log Z over the training split every this many epochs
    ),
)


GROUPS = ('vae', 'critic', 'latent_critic', 'latent_generator')
_PRIOR_GROUPS = {'discriminator': 'critic', 'latent_critic': 'latent_critic',
                 'latent_generator': 'latent_generator'}
PENALTY_SCALES = ('weight', 'beta', 'one')


def batch_terms(m, x, rng, num_prior_samples: int, num_train: int, penalty: str,
                penalty_weight, penalty_exponent, with_penalty: bool, with_vae: bool = True):
  """VAEPP's per-batch quantities (a function of the bound model `m`, for `model.apply`).

  Returns a dict of scalars: critic_real (mean D(x)), critic_fake (mean D(G(eps))), beta,
  gradient_penalty (R, 0 unless `with_penalty`), and, with `with_vae` (all but Algorithm 1's critic
  step, which needs none of them), reconstruction (mean log p(x|z)), kl (mean log q - log f +
  log Z_batch, unclamped), log_z_batch, log_z_prior and log_z_posterior.
  """
  enc_key, dec_key, eps_key, gp_key = (jax.random.fold_in(rng, i) for i in range(4))
  prior, ctx = m.prior, m.prior_context()
  beta = prior.beta()
  eps = prior.sample_base(eps_key, num_prior_samples, ctx)
  fake = ctx.decode_mean(eps)
  d_fake = prior.critic(fake)
  out = {'critic_real': jnp.mean(prior.critic(x)), 'critic_fake': jnp.mean(d_fake), 'beta': beta,
         'gradient_penalty': jnp.zeros((), jnp.float32)}
  if with_vae:
    mean, log_std = models.call_net(m.encoder, x, train=True)
    z, log_q = m.posterior.sample_and_log_prob(mean, log_std, enc_key)
    log_px = m.observation_log_prob(x, m.decode(z, x, True, dec_key))
    log_f = prior.log_unnormalized(z, ctx)
    log_z_prior = jax.nn.logsumexp(-beta * d_fake) - math.log(num_prior_samples)
    log_z_post = (jax.nn.logsumexp(log_f - log_q) + math.log(num_train) - math.log(x.shape[0]))
    log_z_batch = jnp.logaddexp(log_z_prior, log_z_post) - math.log(2.0)
    out.update(reconstruction=jnp.mean(log_px), kl=jnp.mean(log_q - log_f) + log_z_batch,
               log_z_batch=log_z_batch, log_z_prior=log_z_prior, log_z_posterior=log_z_post)
  if with_penalty:
    paired = fake[jnp.arange(x.shape[0]) % num_prior_samples]
    out['gradient_penalty'] = penalties.gradient_penalty(
        prior.critic, x, paired.astype(x.dtype), gp_key, penalty, penalty_weight, penalty_exponent)
  return out


def latent_gan_terms(m, x, rng, num_fake: int, real: str, penalty: str, penalty_weight,
                     penalty_exponent):
  """The latent WGAN's critic and generator losses on a batch (a function of the bound model)."""
  prior = m.prior
  mean, log_std = models.call_net(m.encoder, x)
  if real == 'mean':
    z_real = mean
  else:
    z_real = m.posterior.sample_and_log_prob(mean, log_std, jax.random.fold_in(rng, 0))[0]
  z_real = jax.lax.stop_gradient(z_real)
  fake = prior.sample_gan(jax.random.fold_in(rng, 1), num_fake)
  critic = lambda v: prior.latent_critic(v)[..., 0]
  gp = penalties.gradient_penalty(critic, z_real, fake, jax.random.fold_in(rng, 2), penalty,
                                  penalty_weight, penalty_exponent)
  return {'latent_critic_loss': latent_gan.critic_loss(critic, z_real, fake) + gp,
          'latent_generator_loss': latent_gan.generator_loss(critic, fake),
          'latent_gradient_penalty': gp}


class VAEPP(base.Method):
  """Algorithm 2 of VAEPP, then the latent WGAN (see the module docstring)."""

  name = 'vaepp'
  naive = False
  # The critics' terms, before the learning rate.
  log_fields = base.insert_log_fields_before('learning_rate', (
      ('gradient_penalty', 'gp', '%.3g'), ('latent_critic_loss', 'critic', '%.3g'),
      ('latent_generator_loss', 'generator', '%.3g')))
  host_update_before_validation = True  # Early stopping's NLL needs the log Z of that step.

  def __init__(self, config, steps_per_epoch: int):
    super().__init__(config, steps_per_epoch)
    tc = config.train
    self._vae_steps = joint.num_train_steps(tc, steps_per_epoch)
    c = tc.latent_gan_critic_steps
    self._gan_steps = int(math.ceil(tc.latent_gan_epochs * steps_per_epoch * (c + 1) / c))
    self._rate = joint.learning_rate_schedule(tc, steps_per_epoch)
    vae_epochs = self._vae_steps / steps_per_epoch
    gan_boundaries = {int(round(e * steps_per_epoch)): tc.lr_decay_factor
                      for e in tc.lr_decay_epochs if e > vae_epochs}
    self._gan_rate = optax.piecewise_constant_schedule(tc.learning_rate, gan_boundaries)
    self._l2_weight = tc.l2_reg

  @classmethod
  def validate(cls, config):
    tc, mc = config.train, config.model
    if mc.prior != 'pullback':
      raise ValueError(f'train.method={cls.name} trains a pull-back prior; set model.prior=pullback '
                       f'(got {mc.prior!r}).')
    penalties.check_kind(tc.gradient_penalty, 'train.gradient_penalty')
    if tc.vaepp_penalty_scale not in PENALTY_SCALES:
      raise ValueError(f'Unknown train.vaepp_penalty_scale {tc.vaepp_penalty_scale!r}; allowed: '
                       f'{", ".join(PENALTY_SCALES)}.')
    for key in ('vaepp_prior_samples', 'latent_gan_critic_steps', 'vaepp_naive_vae_steps'):
      config_lib.check_integer(tc[key], f'train.{key}', 1)
    if tc.latent_gan_epochs < 0:
      raise ValueError(f'train.latent_gan_epochs must be >= 0, got {tc.latent_gan_epochs}.')
    if mc.pullback_sample_start == 'gan' and tc.latent_gan_epochs <= 0:
      raise ValueError('model.pullback_sample_start=gan starts MALA from the latent WGAN: set '
                       'train.latent_gan_epochs > 0 (or model.pullback_sample_start=base).')
    for key in ('vaepp_naive_same_batch', 'vaepp_naive_critic_l2'):
      if not isinstance(tc[key], bool):
        raise ValueError(f'train.{key} must be True or False, got {tc[key]!r}.')
    if tc.latent_gan_real not in ('mean', 'sample'):
      raise ValueError(f'Unknown train.latent_gan_real {tc.latent_gan_real!r}; allowed: mean, '
                       'sample.')

  # Groups -----------------------------------------------------------------------------------------

  def partition(self, params):
    prior = dict(params['prior'])
    out = {g: {} for g in GROUPS}
    for name, group in _PRIOR_GROUPS.items():
      out[group] = prior.pop(name)
    out['vae'] = dict(params, prior=prior)
    return out

  def merge(self, groups):
    params = dict(groups['vae'])
    params['prior'] = dict(params['prior'],
                           **{name: groups[g] for name, g in _PRIOR_GROUPS.items()})
    return params

  def optimizers(self):
    adam = base.adam_at_global_step  # The schedules are in global steps.
    gan_rate = self._gan_rate
    return {'vae': adam(self._rate), 'critic': adam(self._rate, 0.5 if self.naive else 0.9),
            'latent_critic': adam(gan_rate, 0.5), 'latent_generator': adam(gan_rate, 0.5)}

  def phases(self):
    tc = self.config.train
    if self.naive and tc.vaepp_naive_same_batch:
      vae = base.Phase('vae', ('vae', 'critic'), 0, self._vae_steps,
                       sequence=(('vae',), ('critic',)))
    elif self.naive:
      cycle = (('vae',),) * tc.vaepp_naive_vae_steps + (('critic',),)
      vae = base.Phase('vae', ('vae', 'critic'), 0, self._vae_steps, cycle=cycle)
    else:
      vae = base.Phase('vae', ('vae', 'critic'), 0, self._vae_steps)
    phases = [vae]
    if self._gan_steps:
      cycle = ((('latent_critic',),) * tc.latent_gan_critic_steps + (('latent_generator',),))
      phases.append(base.Phase('latent_gan', ('latent_critic', 'latent_generator'),
                               self._vae_steps, self._vae_steps + self._gan_steps, cycle=cycle))
    return phases

  def describe(self):
    return ', '.join(f'{p.name} ({p.end - p.start} steps)' for p in self.phases())

  def host_update_every(self):
    return max(0, int(round(self.config.train.log_z_every_epochs * self.steps_per_epoch)))

  def host_update(self, model, state, step, dataset, mesh, key):
    from vaeprior_jax.priors.pullback import normalizer  # pylint: disable=g-import-not-at-top
    from vaeprior_jax import sharding  # pylint: disable=g-import-not-at-top
    config = self.config
    batch_size = sharding.round_up_to_devices(config.eval.batch_size, mesh)
    if getattr(self, '_log_z_fn', None) is None:  # Compiled once per run.
      self._log_z_fn = normalizer.posterior_log_z_fn(model, config.eval.log_z_samples,
                                                    config.eval.log_z_chunk_size)
    variables, info = normalizer.refresh_log_z(model, base.model_variables(state), dataset, config,
                                              mesh, key, 0, batch_size, self._log_z_fn)
    model_state = dict(state['model_state'], partition=variables['partition'])
    return dict(state, model_state=model_state), {
        'log_z': info['log_z'], 'log_z_stderr': info['log_z_stderr']}

  # Loss -------------------------------------------------------------------------------------------

  def _penalty_scale(self, beta):
    scale = self.config.train.vaepp_penalty_scale
    if scale == 'beta':
      return beta
    return 1.0 if scale == 'one' else self.config.model.pullback_weight

  def loss(self, model, params, model_state, trained, batch, rng, step):
    tc = self.config.train
    l2 = self._l2_weight * objectives.l2_penalty(trained)
    weight = tc.gradient_penalty_weight or None
    exponent = tc.gradient_penalty_exponent or None
    if 'latent_critic' in trained or 'latent_generator' in trained:
      t, model_state = base.apply_model(
          model, params, model_state, batch, rng, batch.shape[0], tc.latent_gan_real,
          tc.gradient_penalty, tc.latent_gan_penalty_weight or None, exponent,
          method=latent_gan_terms)
      key = 'latent_critic_loss' if 'latent_critic' in trained else 'latent_generator_loss'
      loss = t[key] + l2
      metrics = {'loss': loss, key: t[key], 'learning_rate': self._gan_rate(step)}
      if 'latent_critic' in trained:
        metrics['latent_gradient_penalty'] = t['latent_gradient_penalty']
      return loss, metrics, model_state
    num_train = self.num_train_examples or self.steps_per_epoch * tc.batch_size
    with_penalty, with_vae = 'critic' in trained, 'vae' in trained
    t, model_state = base.apply_model(
        model, params, model_state, batch, rng, tc.vaepp_prior_samples, num_train,
        tc.gradient_penalty, weight, exponent, with_penalty, with_vae, method=batch_terms)
    scaled_penalty = self._penalty_scale(t['beta']) * t['gradient_penalty']
    metrics = dict(t, l2=l2, learning_rate=self._rate(step))
    if with_vae:
      loss = -t['reconstruction'] + jnp.maximum(t['kl'], 0.0) + l2
      if with_penalty:  # Algorithm 2: one loss for the VAE and D.
        loss = loss + scaled_penalty
      metrics['elbo'] = t['reconstruction'] - t['kl']
    else:  # Algorithm 1's critic step.
      if not tc.vaepp_naive_critic_l2:
        l2 = metrics['l2'] = jnp.zeros_like(l2)
      loss = t['critic_real'] - t['critic_fake'] + scaled_penalty + l2
    metrics['loss'] = loss
    return loss, metrics, model_state


class NaiveVAEPP(VAEPP):
  """Algorithm 1 of VAEPP, then the latent WGAN (see the module docstring)."""
  name = 'vaepp_naive'
  naive = True


base.REGISTRY.register('vaepp', VAEPP)
base.REGISTRY.register('vaepp_naive', NaiveVAEPP)
