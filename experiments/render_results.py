r"""Renders the tables of experiments/RESULTS.md from the committed records in experiments/records/.

  python -m experiments.render_results            # rewrites every rendered table (and the plot)
  python -m experiments.render_results --check    # exit 1 if a table differs from its records

A rendered table sits in RESULTS.md between the lines `<!-- table NAME -->` and
`<!-- end table NAME -->`; `TABLES` maps each NAME to the function that builds it from the files of
one records folder. Everything outside the markers is prose, written by hand. The test suite runs
`--check`, so a table cannot drift from its records, and a record cannot change without its table.

Records are the files `experiments.evaluate`, `experiments.sweep` and the trainer write in a workdir
(records.jsonl, eval_*.json, sample_quality_*.json, analysis_*.json, metrics.jsonl, config.json),
copied into a dated folder with a README saying how they were made.
"""

import json
import math
import os
import re
import statistics
import sys
from typing import Callable, Dict, Optional, Sequence

from experiments.configs import dai2019 as dai2019_configs
from vaeprior_jax import files

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, 'RESULTS.md')
RECORDS = os.path.join(HERE, 'records')
BEGIN = re.compile(r'^<!-- table ([a-z0-9_]+) -->$')
END = '<!-- end table {} -->'


# ----------------------------------------------------------------------------------- reading

def read_json(path: str):
  with open(path) as f:
    return json.load(f)


def logged_rows(path: str) -> Dict[int, dict]:
  """{step: row} of a metrics.jsonl's training rows (those with a loss); a resumed run's repeat of
  a step replaces the earlier line."""
  return {int(r['step']): r for r in files.read_jsonl(path) if 'loss' in r}


def latest_likelihood(path: str, **protocol) -> Optional[dict]:
  """The last likelihood record of a records.jsonl whose protocol has the given values."""
  found = None
  for record in files.read_jsonl(path):
    if record.get('kind') == 'likelihood' and all(
        record.get('protocol', {}).get(k) == v for k, v in protocol.items()):
      found = record
  return found


def seed_folders(folder: str, file: str):
  """[(S, folder/seedS)] of the seed folders under `folder` that hold `file`, by seed."""
  found = []
  for name in os.listdir(folder) if os.path.isdir(folder) else ():
    m = re.fullmatch(r'seed(\d+)', name)
    if m and os.path.exists(os.path.join(folder, name, file)):
      found.append((int(m.group(1)), os.path.join(folder, name)))
  return sorted(found)


# ---------------------------------------------------------------------------------- formatting

def sig(value: float, digits: int = 3) -> str:
  """`value` to `digits` significant digits, without an exponent: 0.0436, 0.905."""
  if value == 0 or not math.isfinite(value):
    return f'{value:g}'
  decimals = max(digits - 1 - int(math.floor(math.log10(abs(value)))), 0)
  return f'{value:.{decimals}f}'


def mean_sd(values: Sequence[float], fmt: Callable[[float], str]) -> str:
  """'mean ± sd' over seeds (sd with n - 1), or the one value."""
  if len(values) == 1:
    return fmt(values[0])
  return f'{fmt(statistics.mean(values))} ± {fmt(statistics.stdev(values))}'


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
  lines = ['| ' + ' | '.join(header) + ' |', '|' + ' --- |' * len(header)]
  lines += ['| ' + ' | '.join(row) + ' |' for row in rows]
  return '\n'.join(lines)


# -------------------------------------------------------- Dai & Wipf, a dense first stage (issue 42)

DAI_DENSE = 'dai2019_dense_2026-12-07'
DAI_TITLES = (('mnist', 'MNIST'), ('fashion', 'Fashion-MNIST'))
# The rows shown of the window means (every 2,000 steps; 937 steps per epoch at batch 64); None: the
# last.
DAI_STAGE1_STEPS = (2000, 10000, 20000, 40000, 100000, 200000, None)
DAI_STAGE2_STEPS = (2000, 6000, 10000, 14000, 20000, 26000, None)


def _dai_runs(folder: str, stage: str):
  """{(dataset, seed): path prefix} of the runs with a `stage` metrics file."""
  out = {}
  for name in sorted(os.listdir(folder)):
    m = re.fullmatch(rf'([a-z]+)_s(\d+)_{stage}_metrics\.jsonl', name)
    if m:
      out[(m.group(1), int(m.group(2)))] = os.path.join(folder, f'{m.group(1)}_s{m.group(2)}_')
  return out


def _trajectory(folder: str, stage: str, steps, keys) -> str:
  runs = _dai_runs(folder, stage)
  first = logged_rows(runs[('mnist', 0)] + f'{stage}_metrics.jsonl')
  header = ['epoch'] + [f'{first[s or max(first)]["epoch"]:.0f}' for s in steps]
  rows = []
  for dataset, label in DAI_TITLES:
    logged = logged_rows(runs[(dataset, 0)] + f'{stage}_metrics.jsonl')
    for key, name, fmt in keys:
      cells = [fmt(logged[s or max(logged)][key]) for s in steps]
      cells[-1] = f'**{cells[-1]}**' if key != 'kl' else cells[-1]
      rows.append([f'{label} {name}'] + cells)
  return table(header, rows)


def dai2019_dense_stage1(folder: str) -> str:
  """γ beside √MSE and the KL along the first stage (seed 0)."""
  return _trajectory(folder, 'stage1', DAI_STAGE1_STEPS, (
      ('gamma', 'γ', sig), ('sqrt_mse', '√MSE', sig), ('kl', 'KL (nats)', lambda v: f'{v:.1f}')))


def dai2019_dense_stage2(folder: str) -> str:
  """γ_z beside √MSE_z and the KL along the second stage (seed 0)."""
  return _trajectory(folder, 'two_stage', DAI_STAGE2_STEPS, (
      ('gamma_z', 'γ_z', sig), ('sqrt_mse_z', '√MSE_z', sig),
      ('kl', 'KL (nats)', lambda v: f'{v:.1f}')))


def _dai_seed_columns(runs: Dict[int, str]) -> Dict[int, dict]:
  """{seed: the first stage's end, the second stage's γ_z and the spectra} of one dataset's runs."""
  columns = {}
  for seed, prefix in sorted(runs.items()):
    logged = logged_rows(prefix + 'stage1_metrics.jsonl')
    last = logged[max(logged)]
    close = min(s for s, r in logged.items() if abs(r['gamma'] / r['sqrt_mse'] - 1) <= 0.01)
    two_stage = logged_rows(prefix + 'two_stage_metrics.jsonl')
    distance = read_json(prefix + 'analysis_two_stage.json')['distance_to_standard_normal']
    columns[seed] = {'gamma': last['gamma'], 'sqrt_mse': last['sqrt_mse'],
                     'ratio': last['gamma'] / last['sqrt_mse'], 'close': logged[close]['epoch'],
                     'kl': last['kl'], 'gamma_z': two_stage[max(two_stage)]['gamma_z'],
                     'q_z': distance['q_z'], 'q_u': distance['q_u']}
  return columns


# The rows of the tables over seeds: (key, name, a seed's format, the mean ± sd's format or None).
DAI_SEED_ROWS = (
    ('gamma', 'stage 1: γ', lambda v: f'{v:.5f}', lambda v: f'{v:.4f}'),
    ('sqrt_mse', 'stage 1: √MSE', lambda v: f'{v:.5f}', lambda v: f'{v:.4f}'),
    ('ratio', 'stage 1: γ / √MSE', lambda v: f'{v:.4f}', None),
    ('close', 'stage 1: first logged epoch with γ within 1% of √MSE', lambda v: f'{v:.1f}', None),
    ('kl', 'stage 1: KL (nats)', lambda v: f'{v:.1f}', lambda v: f'{v:.1f}'),
    ('gamma_z', 'stage 2: γ_z', lambda v: f'{v:.3f}', lambda v: f'{v:.3f}'),
    ('q_z', 'spectral distance of q(z) to N(0, I)', lambda v: f'{v:.3f}', lambda v: f'{v:.2f}'),
    ('q_u', 'spectral distance of q(u) to N(0, I)', lambda v: f'{v:.3f}', lambda v: f'{v:.2f}'))


def dai2019_dense_seeds(folder: str) -> str:
  """Each dataset with two seeds or more: the first stage's end, and the second stage's γ_z and
  spectra, per seed and over seeds (one table per dataset, MNIST's first)."""
  tables, stage1 = [], _dai_runs(folder, 'stage1')
  for dataset, label in DAI_TITLES:
    columns = _dai_seed_columns({seed: prefix for (d, seed), prefix in stage1.items()
                                 if d == dataset})
    if len(columns) < 2:
      continue
    seeds = sorted(columns)
    rows = []
    for key, name, fmt, aggregate in DAI_SEED_ROWS:
      values = [columns[s][key] for s in seeds]
      rows.append([name] + [fmt(v) for v in values]
                  + [mean_sd(values, aggregate) if aggregate else ''])
    tables.append(table([f'{label}, dense first stage 400 epochs, second stage 30']
                        + [f'seed {s}' for s in seeds] + ['mean ± sd'], rows))
  return '\n\n'.join(tables)


def dai2019_dense_cfd(folder: str) -> str:
  """The classifier Fréchet distances of the sample-quality reports, per seed and over seeds."""
  header = ['CFD (± bootstrap sd)', 'two-stage samples', 'first-stage samples (z ~ N(0, I))',
            'reconstructions', 'real training images (the floor)']
  kinds = ('samples', 'first_stage_samples', 'reconstructions', 'data')
  rows = []
  for dataset, label in DAI_TITLES:
    reports = {seed: read_json(prefix + 'sample_quality_two_stage.json')
               for (d, seed), prefix in _dai_runs(folder, 'stage1').items() if d == dataset}
    for seed, r in sorted(reports.items()):
      cells = [f'{r["cfd_" + k]:.{1 if r["cfd_" + k] > 10 else 2}f} ± '
               f'{r["cfd_" + k + "_sd"]:.{1 if r["cfd_" + k] > 10 else 2}f}' for k in kinds]
      cells[0] = f'**{cells[0]}**'
      rows.append([f'{label}, seed {seed}'] + cells)
    if len(reports) > 1:
      over = [mean_sd([r['cfd_' + k] for r in reports.values()], lambda v: f'{v:.1f}')
              for k in kinds[:2]]
      rows.append([f'{label}, mean ± sd over seeds', f'**{over[0]}**', over[1], '', ''])
  return table(header, rows)


# Table 1's single-stage baselines on the dense first stage: (records' stage name = the config's
# model token, label). The learned-γ VAE is the two-stage runs' first stage (`stage1`).
DAI_BASELINES = (('vae_xent', 'VAE, cross-entropy'), ('vae_fixed_gamma', 'VAE, fixed γ = 1'))


def _final_gamma(config: dict, last: dict) -> Optional[float]:
  """A Gaussian decoder's γ at the end (the logged one where learned, exp(model.log_gamma) where
  fixed); None for another likelihood."""
  if config['model']['likelihood'] != 'gaussian':
    return None
  return last['gamma'] if config['model']['learn_gamma'] else math.exp(config['model']['log_gamma'])


def _paper_fid(config: dict, model: str) -> float:
  """Table 1's FID of `model` (a dai2019 config's model token) on the config's dataset."""
  fids = dai2019_configs.PAPER_FID[config['data']['dataset']]
  return fids[dai2019_configs.MODELS.index(model)]


def _dai_finished(prefixes: Sequence[str], stage: str, report: str):
  """[(config, last logged training row, sample-quality report)] of the runs at `prefixes`: their
  `stage` config and metrics, and the report file `report`."""
  out = []
  for p in prefixes:
    logged = logged_rows(p + f'{stage}_metrics.jsonl')
    out.append((read_json(p + f'{stage}_config.json'), logged[max(logged)], read_json(p + report)))
  return out


def dai2019_dense_baselines(folder: str) -> str:
  """Table 1's ordering on the dense first stage at 400 epochs: the cross-entropy and fixed-γ
  VAEs' samples, the learned-γ VAE's (the two-stage runs' first-stage samples) and the two-stage
  samples, by CFD (one seed: ± its bootstrap sd; more: mean ± sd over seeds), with the final γ and
  KL, beside the paper's FID of the entry (InfoGAN nets and FID: another metric). A dataset is
  shown once one of its baselines has a record; a row without runs is left out."""
  found = {stage: _dai_runs(folder, stage) for stage in [s for s, _ in DAI_BASELINES] + ['stage1']}
  rows = []
  for dataset, label in DAI_TITLES:
    of = {stage: [p for (d, _), p in sorted(runs.items()) if d == dataset]
          for stage, runs in found.items()}
    if not any(of[stage] for stage, _ in DAI_BASELINES):
      continue
    lines = []  # (label, [(cfd, sd)], [final γ or None] or None, [final KL] or None, paper FID)
    for stage, name in DAI_BASELINES:
      runs = _dai_finished(of[stage], stage, f'{stage}_sample_quality_two_stage.json')
      if runs:
        lines.append((name, [(r['cfd_samples'], r['cfd_samples_sd']) for _, _, r in runs],
                      [_final_gamma(c, e) for c, e, _ in runs], [e['kl'] for _, e, _ in runs],
                      _paper_fid(runs[0][0], stage)))
    runs = _dai_finished(of['stage1'], 'stage1', 'sample_quality_two_stage.json')
    lines.append(('VAE, learned γ',
                  [(r['cfd_first_stage_samples'], r['cfd_first_stage_samples_sd'])
                   for _, _, r in runs],
                  [_final_gamma(c, e) for c, e, _ in runs], [e['kl'] for _, e, _ in runs],
                  _paper_fid(runs[0][0], 'vae_learned_gamma')))
    lines.append(('two-stage VAE (its first stage: the row above)',
                  [(r['cfd_samples'], r['cfd_samples_sd']) for _, _, r in runs], None, None,
                  _paper_fid(runs[0][0], 'two_stage')))
    for name, cfds, gammas, kls, paper in lines:
      if len(cfds) == 1:
        cfd = f'{cfds[0][0]:.1f} ± {cfds[0][1]:.1f} (bootstrap)'
      else:
        cfd = mean_sd([c for c, _ in cfds], lambda v: f'{v:.1f}') + ' (over seeds)'
      gamma = '' if gammas is None else '—' if None in gammas else mean_sd(
          gammas, lambda v: f'{v:.4f}')
      rows.append([f'{label}: {name}', cfd, f'{len(cfds)}', gamma,
                   '' if kls is None else mean_sd(kls, lambda v: f'{v:.1f}'), f'{paper}'])
  return table(['dense first stage, 400 epochs', 'CFD of samples', 'seeds', 'final γ',
                'final KL (nats)', 'paper\'s FID (Table 1: InfoGAN nets, another metric)'], rows)


# ------------------------------------------------------- the leaderboard: every prior on DenseVAE

LEADERBOARD = 'leaderboard_2026-12-07'
LEADERBOARD_SAMPLES = 1000


def leaderboard_results(folder: str) -> Dict[str, Dict[int, dict]]:
  """{prior: {seed: record}}: the latest likelihood record of each seed's workdir files
  (folder/PRIOR/seedS/records.jsonl) with the leaderboard's protocol (1,000 samples, the whole test
  split)."""
  out = {}
  for prior in sorted(os.listdir(folder) if os.path.isdir(folder) else ()):
    if not os.path.isdir(os.path.join(folder, prior)):
      continue
    for seed, path in seed_folders(os.path.join(folder, prior), 'records.jsonl'):
      record = latest_likelihood(os.path.join(path, 'records.jsonl'), split='test',
                                 num_samples=LEADERBOARD_SAMPLES, max_examples=None)
      if record is not None:
        out.setdefault(prior, {})[seed] = record
  return out


# The reverse AIS run's upper bound on log Z holds only if its starting chains sample p: above this
# R-hat of their energy (or where the two bounds cross) the NLL's upper end is void (infinite).
MAX_RHAT = 1.1


def _interval(metrics: dict):
  """(low, high) of the NLL: the AIS sandwich where there is one (high = inf where the reverse
  bound does not hold), else (nll, nll)."""
  if 'nll_ais_lower' not in metrics:
    return metrics['nll'], metrics['nll']
  low, high = metrics['nll_ais_lower'], metrics['nll_ais_upper']
  if metrics.get('log_z_ais_sampler_rhat_energy', math.inf) > MAX_RHAT or high < low:
    high = math.inf
  return low, high


def _leaderboard_rows(folder: str):
  """[(prior, {seed: metrics}, {seed: record})] sorted by the mean of the NLL's upper end."""
  results = leaderboard_results(folder)
  rows = [(prior, {s: r['metrics'] for s, r in seeds.items()}, seeds)
          for prior, seeds in results.items()]
  return sorted(rows, key=lambda row: statistics.mean(_interval(m)[1] for m in row[1].values()))


def leaderboard(folder: str) -> str:
  """Every prior on one net, dataset, budget and estimator, over seeds."""
  two = lambda v: f'{v:.2f}'
  one = lambda v: f'{v:.1f}'
  header = ['prior', 'seeds', 'test NLL (mean ± sd over seeds)', 'ELBO', 'KL', 'active units',
            'training wall time (min)', 'numbers in p(z)']
  out = []
  for prior, metrics, records in _leaderboard_rows(folder):
    seeds = sorted(metrics)
    values = lambda key: [metrics[s][key] for s in seeds]
    if 'nll_ais_lower' in metrics[seeds[0]]:
      highs = [_interval(metrics[s])[1] for s in seeds]
      if all(math.isfinite(h) for h in highs):
        nll = (f'**[{mean_sd(values("nll_ais_lower"), two)}, {mean_sd(highs, two)}]** (AIS '
               'sandwich)')
      else:
        rhat = max(metrics[s].get('log_z_ais_sampler_rhat_energy', math.inf) for s in seeds)
        nll = (f'**≥ {mean_sd(values("nll_ais_lower"), two)}** (AIS lower end; the upper end is '
               f'void: the reverse run\'s start has R-hat up to {rhat:.2f})')
      nll += f'; {mean_sd(values("nll"), two)} with the paper\'s log Z estimate'

    else:
      nll = f'**{mean_sd(values("nll"), two)}**'
    minutes = [records[s]['budget']['train_seconds'] / 60 for s in seeds]
    units = values('active_units') if 'active_units' in metrics[seeds[0]] else None
    out.append([f'`{prior}`', ', '.join(map(str, seeds)), nll, mean_sd(values('elbo'), two),
                mean_sd(values('kl'), two), mean_sd(units, one) if units else '—',
                mean_sd(minutes, one), f'{int(metrics[seeds[0]]["prior_parameters"]):,}'])
  return table(header, out or [['(no records yet)'] + [''] * (len(header) - 1)])


def leaderboard_resolution(folder: str) -> str:
  """For each pair of neighbours in the leaderboard: is their NLL difference larger than twice its
  standard error over seeds? (For an interval, the gap between the nearer ends.)"""
  rows = _leaderboard_rows(folder)
  lines = []
  for (a, ma, _), (b, mb, _) in zip(rows, rows[1:]):
    hi_a = [_interval(m)[1] for m in ma.values()]
    lo_b = [_interval(m)[0] for m in mb.values()]
    gap = statistics.mean(lo_b) - statistics.mean(hi_a)
    if not math.isfinite(gap):
      verdict = 'not resolved: the upper one\'s NLL has no upper end'
    elif min(len(ma), len(mb)) < 2:
      verdict = 'not resolved: fewer than two seeds'
    else:
      se = math.sqrt(statistics.variance(hi_a) / len(hi_a) + statistics.variance(lo_b) / len(lo_b))
      verdict = (f'resolved ({gap:.2f} > 2 × {se:.2f})' if gap > 2 * se
                 else f'not resolved ({gap:.2f} ≤ 2 × {se:.2f})')
    lines.append(f'- `{a}` below `{b}`: {verdict}')
  return '\n'.join(lines)


def leaderboard_plot(folder: str, path: str) -> None:
  """The leaderboard's NLLs as a PNG: each seed a dot, the pull-back prior's AIS intervals bars."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  rows = _leaderboard_rows(folder)
  fig, ax = plt.subplots(figsize=(7, 3.2))
  top = -math.inf
  for i, (prior, metrics, _) in enumerate(rows):
    for m in metrics.values():
      low, high = _interval(m)
      if high == low:
        ax.plot(i, low, 'o', color='C0')
      elif math.isfinite(high):
        ax.plot([i, i], [low, high], color='C1', lw=3, alpha=0.6)
      else:  # Only a lower end: an arrow up from it.
        ax.annotate('', (i, low + 8), (i, low), arrowprops=dict(color='C1', width=2))
        ax.plot(i, low, '^', color='C1')
        top = max(top, low + 10)
  if math.isfinite(top):
    ax.set_ylim(top=max(top, ax.get_ylim()[1]))
  ax.set_xticks(range(len(rows)), [r[0] for r in rows], rotation=20)
  ax.set_ylabel('test NLL (nats)')
  ax.set_title('DenseVAE, static MNIST, 100 epochs: each seed (bars: AIS intervals; '
               'arrows: a lower end only)', fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def log_z_bounds(path: str) -> str:
  """The AIS bounds of a trained pull-back prior's log Z against the number of temperatures
  (`experiments.log_z_bounds` records, one per K)."""
  rows = []
  for record in sorted((r for r in files.read_jsonl(path) if r.get('kind') == 'log_z_bounds'
                        and not r['protocol'].get('forward_smc')),
                       key=lambda r: r['protocol']['temperatures']):
    m, p = record['metrics'], record['protocol']
    s = m['sampler']
    rows.append([f'{p["temperatures"]:,}', f'{m["log_z_lower"]:.2f} ± {m["log_z_lower_stderr"]:.2f}',
                 f'{m["log_z_upper"]:.2f} ± {m["log_z_upper_stderr"]:.2f}',
                 f'{m["log_z_lower_mean"]:.2f} / {m["log_z_upper_mean"]:.2f}',
                 f'{s["rhat_energy"]:.2f}', f'{s["ess_energy"]:.0f}',
                 f'{m["energy_gradients"]:,}', f'{m["seconds"] / 60:.1f}'])
  return table(['temperatures K', 'forward: lower bound (± s.e.)',
                'reverse: "upper bound" (± s.e.)', 'mean log weights, forward / reverse',
                'R-hat of the reverse start (energy)', 'its ESS', 'energy gradients per chain',
                'minutes'], rows)


def log_z_smc(folder: str) -> str:
  """The pull-back prior's log Z between tempered SMC's estimate (a stochastic lower bound) and
  the reverse AIS run from SMC's particles, one row per run (`experiments.log_z_bounds
  --forward_smc` records in folder/seedS/log_z_bounds.jsonl) for each trained seed S, in order of
  particles, temperatures and SMC seed, with the test NLL interval they give: that seed's
  evaluation NLL (folder/seedS/records.jsonl) moved by each end minus the log Z it used."""
  rows = []
  for seed, path in seed_folders(folder, 'log_z_bounds.jsonl'):
    evaluation = latest_likelihood(os.path.join(path, 'records.jsonl'))
    nll, used = evaluation['metrics']['nll'], evaluation['metrics']['log_z']
    bounds = os.path.join(path, 'log_z_bounds.jsonl')
    for record in sorted((r for r in files.read_jsonl(bounds) if r.get('kind') == 'log_z_bounds'
                          and r['protocol'].get('forward_smc')),
                         key=lambda r: (r['protocol']['chains'], r['protocol']['temperatures'],
                                        r['protocol']['seed'])):
      b, p = record['metrics'], record['protocol']
      s = b['sampler']
      rows.append([str(seed), f'{p["chains"]:,}', f'{p["temperatures"]:,}', str(p['seed']),
                   f'{b["log_z_lower"]:.2f}',
                   f'{b["log_z_upper"]:.2f} ± {b["log_z_upper_stderr"]:.2f}',
                   f'[{nll + b["log_z_lower"] - used:.2f}, {nll + b["log_z_upper"] - used:.2f}]',
                   f'{s["rhat_energy"]:.2f}', f'{s["ess_energy"]:.0f}', f'{b["seconds"] / 60:.1f}'])
  return table(['trained seed', 'particles', 'temperatures K', 'SMC seed', 'SMC: log Z^ (lower)',
                'reverse from its particles (± s.e.)', 'test NLL interval',
                'R-hat of the reverse start (energy)', 'its ESS', 'minutes'], rows)


# ------------------------------------------------- VAEPP's quickstart runs beside the standard prior

VAEPP_STATIC = 'vaepp_quickstart_static_mnist_2026-12-07'
VAEPP_RUNS = (('standard', 'standard prior'), ('vaepp', 'vaepp (Algorithm 2)'),
              ('naive', 'vaepp_naive (Algorithm 1)'))


def vaepp_runs(folder: str, **protocol) -> str:
  """VAEPP's runs (folder/RUN/records.jsonl, RUN in `VAEPP_RUNS`) beside the standard prior on the
  same nets: the NLL with each estimate of log Z, the paper's NLL, and what the estimates rest on."""
  rows = []
  for run, label in VAEPP_RUNS:
    path = os.path.join(folder, run, 'records.jsonl')
    record = latest_likelihood(path, **protocol) if os.path.exists(path) else None
    if record is None:
      continue
    m, paper = record['metrics'], record['config'].get('paper_nll')
    pullback = 'log_z' in m
    dash = '—'
    rows.append([
        label,
        f'**{m["nll"]:.2f}**' if not pullback else f'{m["nll"]:.2f}',
        f'**{m["nll_with_prior_log_z"]:.2f}**' if pullback else dash,
        f'{paper:.2f}' if paper is not None else dash,
        f'{m["elbo"]:.2f}', f'{m["kl"]:.2f}',
        f'{m["beta"]:.2f}' if pullback else dash,
        f'{m["log_z"]:.2f} ± {m["log_z_stderr"]:.2f}' if pullback else dash,
        (f'{m["log_z_prior"]:.2f} ± {m["log_z_prior_stderr"]:.2f} '
         f'({m["log_z_prior_num_samples"]:,} draws)') if pullback else dash,
        f'{m["log_z_deficit_95"]:.1f}' if pullback else dash,
        f'{m["kl_base_to_prior"]:.2f}' if pullback else dash,
        f'{m["critic_prior"]:.2f} / {m["critic_posterior"]:.2f}' if pullback else dash,
        f'{record["budget"]["train_seconds"] / 60:.1f} / {m["eval_seconds"] / 60:.1f}'])
  return table(['run', 'test NLL, the paper\'s (posterior-based) log Z',
                'test NLL, prior-based log Z', 'paper (Table 2)', 'ELBO', 'KL', 'β',
                'log Z: posterior-based (± s.e.)', 'log Z: prior-based (± s.e.)',
                'log_z_deficit_95', 'KL(p_N ‖ p)', 'E_p D(G(z)) / E_q D(G(z))',
                'train / eval wall time (min)'], rows)


TABLES: Dict[str, Callable[[str], str]] = {
    'dai2019_dense_stage1': lambda root: dai2019_dense_stage1(os.path.join(root, DAI_DENSE)),
    'dai2019_dense_stage2': lambda root: dai2019_dense_stage2(os.path.join(root, DAI_DENSE)),
    'dai2019_dense_seeds': lambda root: dai2019_dense_seeds(os.path.join(root, DAI_DENSE)),
    'dai2019_dense_cfd': lambda root: dai2019_dense_cfd(os.path.join(root, DAI_DENSE)),
    'dai2019_dense_baselines': lambda root: dai2019_dense_baselines(
        os.path.join(root, DAI_DENSE)),
    'leaderboard': lambda root: leaderboard(os.path.join(root, LEADERBOARD)),
    'leaderboard_resolution': lambda root: leaderboard_resolution(os.path.join(root, LEADERBOARD)),
    'pullback_log_z_bounds': lambda root: log_z_bounds(
        os.path.join(root, LEADERBOARD, 'pullback', 'seed0', 'log_z_bounds.jsonl')),
    'pullback_log_z_smc': lambda root: log_z_smc(os.path.join(root, LEADERBOARD, 'pullback')),
    'vaepp_quickstart_static_mnist': lambda root: vaepp_runs(
        os.path.join(root, VAEPP_STATIC), split='test', num_samples=1000, max_examples=1000),
}


# ---------------------------------------------------------------------------------- rendering

def render(text: str, records_root: str = RECORDS, tables: Optional[Dict] = None):
  """(text with every marked table rebuilt from its records, the names of those that changed).
  Raises ValueError for a marker without its end, or a name `tables` does not know."""
  tables = TABLES if tables is None else tables
  lines = text.split('\n')
  out, changed, i = [], [], 0
  while i < len(lines):
    out.append(lines[i])
    m = BEGIN.match(lines[i])
    i += 1
    if not m:
      continue
    name = m.group(1)
    if name not in tables:
      raise ValueError(f'RESULTS.md marks a table {name!r} that render_results does not know; '
                       f'known: {", ".join(sorted(tables))}.')
    try:
      end = lines.index(END.format(name), i)
    except ValueError:
      raise ValueError(f'RESULTS.md: the table {name!r} has no line {END.format(name)!r}.') from None
    new = tables[name](records_root).split('\n')
    if lines[i:end] != new:
      changed.append(name)
    out.extend(new)
    out.append(lines[end])
    i = end + 1
  return '\n'.join(out), changed


def main(argv: Sequence[str]) -> int:
  check = '--check' in argv
  unknown = [a for a in argv if a != '--check']
  if unknown:
    print(f'render_results: unknown argument {unknown[0]!r}; allowed: --check.', file=sys.stderr)
    return 2
  with open(RESULTS) as f:
    text = f.read()
  new, changed = render(text)
  if check:
    for name in changed:
      print(f'RESULTS.md: table {name!r} differs from its records; run python -m '
            'experiments.render_results', file=sys.stderr)
    return 1 if changed else 0
  if new != text:
    with open(RESULTS, 'w') as f:
      f.write(new)
  board = os.path.join(RECORDS, LEADERBOARD)
  if os.path.isdir(board):
    leaderboard_plot(board, os.path.join(board, 'leaderboard.png'))
  print(f'{len(changed)} table(s) rewritten: {", ".join(changed) or "none"}.')
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
