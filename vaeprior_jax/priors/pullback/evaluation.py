"""What the pull-back prior adds to a workdir's evaluation (`hooks.EvaluationHooks`):

  - log Z estimated anew (posterior-based, the paper's estimator) before the likelihood, which
    depends on it; after it, the prior-based estimate beside it (`normalizer.check_against_prior`),
    with `eval.log_z_ais_temperatures` > 0 AIS lower and upper bounds on log Z and the NLL interval
    they give (`ais_bounds`), and VAEPP's diagnostics;
  - the baselines' sample kinds: decoded draws of the base prior and of the latent WGAN;
  - MALA's settings for one sample-quality report, and its chains' acceptance rate;
  - VAEPP's sample-quality protocol.
"""

from typing import Any, Dict, Optional

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from vaeprior_jax import config as config_lib
from vaeprior_jax import hooks
from vaeprior_jax.priors.pullback import normalizer

# Sample kinds of VAEPP's baselines (its Table 4): images from z without MALA.
SAMPLERS = {
    # Decoded draws of the base prior (for VAEPP: z ~ N(0, I)).
    'base_samples': lambda m, k, n: m.observation_mean(m.decode(
        m.prior.sample_base(k, n, m.prior_context()))),
    # Decoded draws of the latent WGAN: "GAN-VAEPP".
    'gan_samples': lambda m, k, n: m.observation_mean(m.decode(m.prior.sample_gan(k, n))),
}

MALA_SETTINGS = ('steps', 'step_size', 'adapt_steps')
hooks.QUALITY_SETTINGS['mala'] = ('model.prior', 'a run with a pull-back prior')


def _mala_samples(m, k, n):
  """The model's samples (MALA from the start points) and the chains' mean acceptance rate and step
  size after adaptation."""
  z, chains = m.prior.sample_with_chains(k, n, m.prior_context())
  return m.observation_mean(m.decode(z)), jnp.mean(chains.acceptance_rate), chains.step_size


# VAEPP's protocol: 5,000 samples vs the training set, images as generated (its script does not
# normalise them).
hooks.QUALITY_PROTOCOLS.register(
    'vaepp', hooks.QualityProtocol(5000, 'train', 0, normalize=False,
                                   description='5,000 samples vs the training set'))


class PullbackHooks(hooks.EvaluationHooks):
  """The pull-back prior's `hooks.EvaluationHooks`."""

  quality_protocol = 'vaepp'
  quality_settings = 'mala'

  def check_config(self, config):
    ec = config.eval
    for key, least in (('log_z_samples', 1), ('log_z_max_images', 0), ('log_z_chunk_size', 1),
                       ('log_z_prior_samples', 1), ('log_z_ais_temperatures', 0)):
      config_lib.check_integer(ec[key], f'eval.{key}', least)
    if ec.log_z_ais_temperatures > 0:
      try:
        ais_settings(ec).check()
      except ValueError as e:
        raise ValueError(f'eval.log_z_ais_*: {e}') from None

  def before_likelihood(self, model, variables, ctx):
    # Kept as it goes (the paper's protocol scores every training image with 1,000 samples): a
    # rerun of the same evaluation continues.
    return normalizer.refresh_log_z(
        model, variables, ctx.dataset, ctx.config, ctx.mesh, jax.random.fold_in(ctx.key, 0x2),
        ctx.seed, ctx.batch_size, partial_file=ctx.kept_file('log_z.partial.npz'),
        protocol=dict(step=ctx.step, checkpoint=ctx.checkpoint, eval_seed=ctx.seed,
                      devices=int(ctx.mesh.devices.size)), remove_when_done=False)

  def after_likelihood(self, model, variables, result, ctx, encoder_view):
    ec = ctx.config.eval
    prior_estimate = normalizer.prior_log_z(model, variables, jax.random.fold_in(ctx.key, 0x4),
                                            ec.log_z_prior_samples)
    out = normalizer.check_against_prior(result, prior_estimate)
    if out['log_z_deficit_95'] > 0:
      logging.warning(
          'The posterior-based log Z (%.2f) is below the prior-based estimate (%.2f +- %.2f) by more '
          'than log 20: with 95%% confidence the NLL %.2f is too low by at least %.2f nats '
          '(nll_with_prior_log_z: %.2f). See docs/vaepp.md, "Checking log Z".', result['log_z'],
          out['log_z_prior'], out['log_z_prior_stderr'], result['nll'],
          out['log_z_deficit_95'], out['nll_with_prior_log_z'])
    if ec.log_z_ais_temperatures > 0:
      out.update(ais_bounds(model, variables, result, ec, jax.random.fold_in(ctx.key, 0x5),
                            partial_file=ctx.kept_file('ais.partial.npz'),
                            protocol=dict(step=ctx.step, checkpoint=ctx.checkpoint),
                            remove_when_done=False))
    subset = encoder_view[:min(len(encoder_view), 1000)]
    out.update(normalizer.diagnostics(model, variables, jax.random.fold_in(ctx.key, 0x3), subset,
                                      num_samples=min(normalizer.DIAGNOSTICS_PRIOR_SAMPLES,
                                                      ec.log_z_prior_samples)))
    return out

  def sample_kinds(self):
    return {kind: (fn, f'{kind}.png') for kind, fn in SAMPLERS.items()}

  def apply_quality_settings(self, config, settings: Dict[str, Any]):
    """MALA's steps, step size and adaptation steps for one report (`settings`, checked), written
    into `config`; returns ({'mala': the settings used}, a file-name suffix when any was given)."""
    for name in ('steps', 'adapt_steps'):
      if name in settings and (not isinstance(settings[name], int) or settings[name] < 0):
        raise ValueError(f'mala_{name} must be an integer >= 0, got {settings[name]!r}.')
    if 'step_size' in settings and not settings['step_size'] > 0:
      raise ValueError(f'mala_step_size must be > 0, got {settings["step_size"]!r}.')
    for name, value in settings.items():
      config.model[f'pullback_mala_{name}'] = value
    used = {k: config.model[f'pullback_mala_{k}'] for k in MALA_SETTINGS}
    suffix = '_mala{steps}_{step_size:g}_adapt{adapt_steps}'.format(**used) if settings else ''
    return {'mala': used}, suffix

  def samples_with_report(self, config):
    """With MALA steps: the samples and their chains' statistics, merged into the report's 'mala'."""
    if not config.model.pullback_mala_steps > 0:
      return None

    def record(outputs):
      acceptance, step_size = zip(*[o[1:] for o in outputs])
      return {'acceptance_rate': float(np.mean(acceptance)),
              'step_size_after_adaptation': float(np.mean(step_size))}

    return _mala_samples, 'mala', record


def ais_settings(eval_config):
  """The `ais.Settings` of the `eval.log_z_ais_*` keys."""
  from vaeprior_jax.priors.pullback import ais  # pylint: disable=g-import-not-at-top
  return ais.Settings(num_chains=eval_config.log_z_ais_chains,
                      num_temperatures=eval_config.log_z_ais_temperatures,
                      sampler_steps=eval_config.log_z_ais_sampler_steps,
                      forward_smc=eval_config.log_z_ais_forward_smc)


def ais_bounds(model, variables, result, eval_config, key, partial_file: Optional[str] = None,
               protocol: Optional[Dict] = None, remove_when_done: bool = True) -> Dict[str, Any]:
  """The AIS sandwich of log Z (`normalizer.ais_log_z_bounds`) and the NLL interval it gives:
  log p(x) = log f-weighted sum - log Z, so the NLL moves one for one with log Z, and
  [nll_ais_lower, nll_ais_upper] = nll + ([lower, upper] - the log Z the NLL used). (The NLL's
  own importance-sampling estimate is a stochastic upper bound on it, as for every prior.) The run
  is kept in `partial_file` as it goes (`ais.Progress`): a rerun after a signal goes on from it."""
  settings = ais_settings(eval_config)
  bounds = normalizer.ais_log_z_bounds(model, variables, key, settings, partial_file, protocol,
                                       remove_when_done)
  lower, upper = bounds['log_z_lower'], bounds['log_z_upper']
  logging.info('AIS: %.3f <= log Z <= %.3f (+- %.3f, %.3f; %d temperatures, %d chains, %.0f s; '
               'R-hat of the reverse run\'s start %.3f)', lower, upper,
               bounds['log_z_lower_stderr'], bounds['log_z_upper_stderr'],
               settings.num_temperatures, settings.num_chains, bounds['seconds'],
               bounds['sampler']['rhat_energy'])
  out = {}
  for name, value in bounds.items():  # Flat: the evaluation's result is one level of numbers.
    items = value.items() if isinstance(value, dict) else [('', value)]
    name = name[len('log_z_'):] if name.startswith('log_z_') else name  # log_z_lower -> ..._lower
    out.update({'_'.join(filter(None, ('log_z_ais', name, k))): v for k, v in items})
  out.update(nll_ais_lower=result['nll'] + lower - result['log_z'],
             nll_ais_upper=result['nll'] + upper - result['log_z'])
  return out
