r"""How the AIS bounds on a trained pull-back prior's log Z close as the temperatures multiply: for
each K of `--temperatures`, the forward (lower) and reverse (upper) bounds with `--chains` chains
each way, their gap, the reverse run's start diagnostics (R-hat, ESS) and the cost. Appends one
record per K (kind 'log_z_bounds') to WORKDIR/records.jsonl and writes
WORKDIR/analysis/log_z_bounds.json.

  python -m experiments.log_z_bounds --workdir=runs/leaderboard/pullback/seed0 \
      --temperatures=100,300,1000,3000 --chains=256

Each K is its own run of the bounds (its own pilot-tuned step sizes, fresh chains), seeded by
`--seed` and K, so the rows are independent estimates. `--forward_smc` runs the forward direction
as tempered SMC (`ais.Settings.forward_smc`): its log Z^ is unbiased too, and the reverse run starts
from its final particles, which track p where plain AIS chains are stuck. A signal stops the study between compiled
calls (exit 143); rerunning it skips the K already recorded with this protocol.
"""

import os

from absl import app
from absl import flags

from experiments import common


KIND = 'log_z_bounds'


def log_z_bounds(workdir: str, temperatures, chains: int, sampler_steps: int, seed: int,
                 forward_smc: bool = False):
  """{K: the bounds' result} for each K (see the module docstring); with `forward_smc`, the
  forward run is tempered SMC and the reverse one starts from its particles."""
  import jax  # pylint: disable=g-import-not-at-top
  from vaeprior_jax import files  # pylint: disable=g-import-not-at-top
  from vaeprior_jax.evaluation import records  # pylint: disable=g-import-not-at-top
  from vaeprior_jax.priors.pullback import ais  # pylint: disable=g-import-not-at-top
  from vaeprior_jax.priors.pullback import normalizer  # pylint: disable=g-import-not-at-top
  temperatures = [int(k) for k in temperatures]
  config = common.pullback_run_config(workdir)
  settings_of = lambda k: ais.Settings(num_chains=chains, num_temperatures=k,
                                       sampler_steps=sampler_steps, forward_smc=int(forward_smc))
  for k in temperatures:  # Every setting checked before anything is loaded.
    settings_of(k).check()
  _, model, variables, step = common.restore_run(workdir, config)
  done = {}
  for record in records.read(workdir):
    p = record.get('protocol', {})
    if (record.get('kind') == KIND and p.get('step') == int(step) and p.get('seed') == seed
        and p.get('chains') == chains and p.get('sampler_steps') == sampler_steps
        and bool(p.get('forward_smc', False)) == bool(forward_smc)):
      done[p['temperatures']] = record['metrics']
  out = {}
  for k in temperatures:
    if k in done:
      out[k] = done[k]
      continue
    result = normalizer.ais_log_z_bounds(
        model, variables, jax.random.fold_in(jax.random.key(seed), k), settings_of(k),
        partial_file=os.path.join(workdir, f'log_z_bounds_{"smc_" * bool(forward_smc)}{k}'
                                  '.partial.npz'),
        protocol={'step': int(step)})
    out[k] = result
    print(f'K = {k}: {result["log_z_lower"]:.3f} <= log Z <= {result["log_z_upper"]:.3f} '
          f'(gap {result["gap"]:.3f}; {result["seconds"]:.0f} s; R-hat of the reverse start '
          f'{result["sampler"]["rhat_energy"]:.3f})', flush=True)
    records.append(workdir, KIND, config, result,
                   {'temperatures': k, 'chains': chains, 'sampler_steps': sampler_steps,
                    'seed': seed, 'step': int(step), 'forward_smc': bool(forward_smc),
                    'estimator': ('tempered SMC forward, AIS back from its particles' if forward_smc
                                  else 'AIS both ways (bidirectional Monte Carlo)')
                                 + ', BlackJAX MALA'},
                   budget={'step': int(step)})
  os.makedirs(os.path.join(workdir, 'analysis'), exist_ok=True)
  files.write_json_atomically(os.path.join(workdir, 'analysis', f'log_z_bounds'
                                           f'{"_smc" * bool(forward_smc)}.json'),
                              {str(k): v for k, v in out.items()})
  return out


def _define_flags():
  """The binary's flags, defined only when it runs (its functions are importable beside other
  binaries' flags)."""
  global _WORKDIR, _TEMPERATURES, _CHAINS, _SAMPLER_STEPS, _SEED, _SMC  # pylint: disable=global-statement
  _WORKDIR = flags.DEFINE_string('workdir', None, 'A trained run with model.prior=pullback.')
  _TEMPERATURES = flags.DEFINE_list('temperatures', ['100', '300', '1000', '3000'],
                                    'Numbers of temperatures K, one run of the bounds each.')
  _CHAINS = flags.DEFINE_integer('chains', 256, 'Chains each way.')
  _SAMPLER_STEPS = flags.DEFINE_integer('sampler_steps', 2000,
                                        'MALA steps on p that start the reverse run.')
  _SEED = flags.DEFINE_integer('seed', 0, 'Seed of the chains.')
  _SMC = flags.DEFINE_bool('forward_smc', False, 'The forward run as tempered SMC (particles '
                           'resampled at every temperature); the reverse run starts from its '
                           'particles.')
  flags.mark_flags_as_required(['workdir'])


def main(argv):
  common.start(argv)
  with common.user_errors(), common.stoppable():
    log_z_bounds(_WORKDIR.value, _TEMPERATURES.value, _CHAINS.value, _SAMPLER_STEPS.value,
                 _SEED.value, _SMC.value)


if __name__ == '__main__':
  _define_flags()
  app.run(main)
