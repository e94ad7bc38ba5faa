"""RESULTS.md's rendered tables against the committed records they are built from."""

import json
import os
import shutil

import pytest

from experiments import render_results


def test_every_rendered_table_of_results_md_equals_its_records():
  with open(render_results.RESULTS) as f:
    text = f.read()
  new, changed = render_results.render(text)
  assert not changed, (f'RESULTS.md tables {changed} differ from their records: run '
                       'python -m experiments.render_results')
  assert new == text
  for name in render_results.TABLES:  # Every table the renderer knows is shown.
    assert f'<!-- table {name} -->' in text, name
  assert render_results.main(['--check']) == 0


def test_a_changed_record_changes_its_table_and_fails_the_check(tmp_path):
  root = tmp_path / 'records'
  shutil.copytree(render_results.RECORDS, root)
  with open(render_results.RESULTS) as f:
    text = f.read()
  path = root / render_results.DAI_DENSE / 'mnist_s1_sample_quality_two_stage.json'
  report = json.loads(path.read_text())
  report['cfd_samples'] += 1.0
  path.write_text(json.dumps(report))
  new, changed = render_results.render(text, str(root))
  assert changed == ['dai2019_dense_cfd', 'dai2019_dense_baselines']  # Both show that record.
  assert '**72.0 ± 0.8**' in new and '**67.2 ± 4.2**' in new  # The seed's cell and the mean.


def test_a_datasets_second_seed_adds_its_table_over_seeds(tmp_path):
  """One table per dataset with two seeds or more: a Fashion-MNIST seed 1 (seed 0's files, with
  its final γ and spectra changed) adds a Fashion-MNIST table after MNIST's, which is unchanged."""
  root = tmp_path / 'records'
  shutil.copytree(render_results.RECORDS, root)
  folder = root / render_results.DAI_DENSE
  for path in folder.glob('fashion_s*'):  # Only seed 0 stays, whatever seeds are committed.
    if not path.name.startswith('fashion_s0_'):
      path.unlink()
  for path in folder.glob('fashion_s0_*'):
    shutil.copy(path, folder / path.name.replace('fashion_s0_', 'fashion_s1_'))
  metrics = folder / 'fashion_s1_stage1_metrics.jsonl'
  rows = [json.loads(line) for line in metrics.read_text().splitlines()]
  last = max((r for r in rows if 'loss' in r), key=lambda r: r['step'])
  last['gamma'] = 0.0730  # seed 0 ends at 0.07215.
  metrics.write_text(''.join(json.dumps(r) + '\n' for r in rows))
  analysis = folder / 'fashion_s1_analysis_two_stage.json'
  spectra = json.loads(analysis.read_text())
  spectra['distance_to_standard_normal'].update(q_z=0.81, q_u=0.34)
  analysis.write_text(json.dumps(spectra))
  before = render_results.dai2019_dense_seeds(
      os.path.join(render_results.RECORDS, render_results.DAI_DENSE))
  after = render_results.dai2019_dense_seeds(str(folder))
  mnist, fashion = after.split('\n\n')
  assert mnist == before.split('\n\n')[0] and mnist.startswith('| MNIST, dense first stage')
  assert fashion.startswith('| Fashion-MNIST, dense first stage 400 epochs, second stage 30 | '
                            'seed 0 | seed 1 | mean ± sd |')
  assert '| stage 1: γ | 0.07215 | 0.07300 | 0.0726 ± 0.0006 |' in fashion
  assert '| spectral distance of q(u) to N(0, I) |' in fashion and '0.29 ± 0.07 |' in fashion


def test_the_vaepp_table_gives_each_estimate_of_log_z_and_what_it_rests_on(tmp_path):
  """The leaderboard's seed-0 records stand in for a VAEPP run and its standard-prior baseline."""
  board = os.path.join(render_results.RECORDS, render_results.LEADERBOARD)
  for run, prior in (('standard', 'standard'), ('vaepp', 'pullback')):
    (tmp_path / run).mkdir()
    shutil.copy(os.path.join(board, prior, 'seed0', 'records.jsonl'), tmp_path / run)
  rendered = render_results.vaepp_runs(str(tmp_path), split='test', num_samples=1000,
                                       max_examples=None)
  lines = rendered.split('\n')
  assert len(lines) == 4  # Header, rule, and the two runs there are (no naive run).
  assert lines[2].startswith('| standard prior | **89.03** | — | — | -94.68 | 29.30 | — |')
  assert lines[3].startswith('| vaepp (Algorithm 2) | 72.55 | **89.86** | — | -81.09 | 24.06 | '
                             '10.00 | -61.85 ± 0.46 | -44.55 ± 1.00 (100,000 draws) | 14.3 |')
  assert render_results.vaepp_runs(str(tmp_path), split='test', num_samples=1000,
                                   max_examples=1000).count('\n') == 1  # No record of that protocol.


def test_markers_are_checked():
  with pytest.raises(ValueError, match="table 'nope' that render_results does not know"):
    render_results.render('<!-- table nope -->\n<!-- end table nope -->')
  with pytest.raises(ValueError, match="has no line '<!-- end table dai2019_dense_cfd -->'"):
    render_results.render('<!-- table dai2019_dense_cfd -->\n| a |')
  assert render_results.render('| prose and a hand table |') == ('| prose and a hand table |', [])


def _write_board(root, results):
  """A leaderboard folder of records: {prior: {seed: metrics}}."""
  for prior, seeds in results.items():
    for seed, metrics in seeds.items():
      folder = root / prior / f'seed{seed}'
      folder.mkdir(parents=True)
      other = {'kind': 'likelihood', 'protocol': {'split': 'test', 'num_samples': 100,
                                                   'max_examples': None}, 'metrics': {'nll': 0.0}}
      record = {'kind': 'likelihood', 'budget': {'train_seconds': 600.0 + seed * 60},
                'protocol': {'split': 'test', 'num_samples': 1000, 'max_examples': None},
                'metrics': dict(metrics, elbo=-metrics['nll'] - 5, kl=20.0, active_units=30,
                                prior_parameters=10)}
      (folder / 'records.jsonl').write_text(json.dumps(record) + '\n' + json.dumps(other) + '\n')


def test_the_leaderboard_sorts_aggregates_and_says_which_gaps_the_seeds_resolve(tmp_path):
  _write_board(tmp_path, {
      'standard': {0: {'nll': 90.0}, 1: {'nll': 91.0}, 2: {'nll': 92.0}},
      'realnvp': {0: {'nll': 85.0}, 1: {'nll': 85.2}, 2: {'nll': 84.8}},
      'mog': {0: {'nll': 85.3}, 1: {'nll': 85.6}, 2: {'nll': 85.0}},
      'pullback': {0: {'nll': 80.0, 'nll_ais_lower': 87.0, 'nll_ais_upper': 95.0,
                       'log_z_ais_sampler_rhat_energy': 1.02},
                   1: {'nll': 81.0, 'nll_ais_lower': 88.0, 'nll_ais_upper': 96.0,
                       'log_z_ais_sampler_rhat_energy': 1.05}}})
  rows = render_results.leaderboard(str(tmp_path)).split('\n')[2:]
  assert [r.split(' | ')[0] for r in rows] == ['| `realnvp`', '| `mog`', '| `standard`',
                                               '| `pullback`']
  assert '**91.00 ± 1.00**' in rows[2] and '| 11.0 ± 1.0 |' in rows[2]  # Minutes: 10, 11, 12.
  assert '**[87.50 ± 0.71, 95.50 ± 0.71]** (AIS sandwich)' in rows[3]
  lines = render_results.leaderboard_resolution(str(tmp_path)).split('\n')
  # realnvp / mog: 0.30 apart, se sqrt(0.04/3 + 0.09/3) = 0.21: not resolved. mog / standard:
  # 5.70 apart, se sqrt(0.09/3 + 1/3) = 0.60: resolved. standard / pullback: pullback's lower end 87.5 is below
  # standard's 91: not resolved (a negative gap).
  assert lines[0].startswith('- `realnvp` below `mog`: not resolved (0.30 ≤ 2 × 0.21)')
  assert lines[1].startswith('- `mog` below `standard`: resolved (5.70 > 2 × 0.60)')
  assert lines[2].startswith('- `standard` below `pullback`: not resolved (-3.50')
  render_results.leaderboard_plot(str(tmp_path), str(tmp_path / 'board.png'))
  # Chains that did not mix (R-hat 2.5): the reverse bound is void, the NLL only has a lower end.
  path = tmp_path / 'pullback' / 'seed1' / 'records.jsonl'
  lines = path.read_text().splitlines()
  record = json.loads(lines[0])
  record['metrics']['log_z_ais_sampler_rhat_energy'] = 2.5
  path.write_text('\n'.join([json.dumps(record)] + lines[1:]) + '\n')
  rows = render_results.leaderboard(str(tmp_path)).split('\n')[2:]
  assert rows[3].startswith('| `pullback`') and '**≥ 87.50 ± 0.71** (AIS lower end; the upper end' \
      ' is void: the reverse run\'s start has R-hat up to 2.50)' in rows[3]
  render_results.leaderboard_plot(str(tmp_path), str(tmp_path / 'board.png'))
  empty = render_results.leaderboard(str(tmp_path / 'none'))  # No records yet: says so.
  assert empty.endswith('| (no records yet) |' + '  |' * 7)
  assert (tmp_path / 'board.png').read_bytes()[:4] == b'\x89PNG'


def test_the_smc_bounds_table_keeps_smc_runs_and_moves_the_nll_by_each_end(tmp_path):
  run = lambda smc, k, seed, lower, upper, chains=256: {
      'kind': 'log_z_bounds',
      'protocol': {'temperatures': k, 'seed': seed, 'forward_smc': smc, 'chains': chains},
      'metrics': {'log_z_lower': lower, 'log_z_upper': upper, 'log_z_upper_stderr': 0.5,
                  'log_z_lower_stderr': 0.1, 'log_z_lower_mean': 0.0, 'log_z_upper_mean': 0.0,
                  'energy_gradients': 1, 'seconds': 120.0,
                  'sampler': {'rhat_energy': 1.04, 'ess_energy': 2000.0}}}
  for trained, runs, nll, log_z in (
      (0, (run(True, 3000, 0, -12.0, -10.0), run(False, 1000, 0, -16.0, -70.0),
           run(True, 1000, 1, -13.0, -9.5)), 72.5, -61.5),
      (1, (run(True, 1000, 0, -2.0, 2.0, chains=1024), run(True, 1000, 0, -3.0, 1.0)), 73.0,
           -41.0),
      (2, (), 71.0, -50.0)):  # Seed 2 has no bounds yet: no row.
    folder = tmp_path / f'seed{trained}'
    folder.mkdir()
    if runs:
      (folder / 'log_z_bounds.jsonl').write_text('\n'.join(json.dumps(r) for r in runs) + '\n')
    (folder / 'records.jsonl').write_text(json.dumps({
        'kind': 'likelihood', 'protocol': {}, 'metrics': {'nll': nll, 'log_z': log_z}}) + '\n')
  lines = render_results.log_z_smc(str(tmp_path)).split('\n')
  # Header, rule, seed 0's two SMC runs in (K, seed) order, seed 1's in order of particles.
  assert len(lines) == 6
  assert lines[2].startswith('| 0 | 256 | 1,000 | 1 | -13.00 | -9.50 ± 0.50 | [121.00, 124.50] | '
                             '1.04 |')
  assert lines[3].startswith('| 0 | 256 | 3,000 | 0 | -12.00 | -10.00 ± 0.50 | [122.00, 124.00] |')
  assert lines[4].startswith('| 1 | 256 | 1,000 | 0 | -3.00 | 1.00 ± 0.50 | [111.00, 115.00] |')
  assert lines[5].startswith('| 1 | 1,024 | 1,000 | 0 | -2.00 | 2.00 ± 0.50 | [112.00, 116.00] |')
  bounds = str(tmp_path / 'seed0' / 'log_z_bounds.jsonl')
  assert '-70.00' in render_results.log_z_bounds(bounds)
  assert '-9.50' not in render_results.log_z_bounds(bounds)


def test_the_baselines_table_orders_table_1s_entries_by_cfd(tmp_path):
  """Made-up baseline runs on MNIST (seed 0's first-stage files with the config's likelihood, the
  logged KL and the CFD changed; the records' own baseline files removed): a cross-entropy run, and
  a fixed-γ one at two seeds, show MNIST's four entries; Fashion-MNIST waits for one of its
  baselines."""
  folder = tmp_path / 'dense'
  shutil.copytree(os.path.join(render_results.RECORDS, render_results.DAI_DENSE), folder)
  for path in folder.glob('*_vae_*'):
    path.unlink()

  def made_up(prefix, kl, cfd, **model):
    config = json.loads((folder / 'mnist_s0_stage1_config.json').read_text())
    config['model'].update(model)
    (folder / f'{prefix}config.json').write_text(json.dumps(config))
    rows = [json.loads(line)
            for line in (folder / 'mnist_s0_stage1_metrics.jsonl').read_text().splitlines()]
    for r in rows:
      r.pop('gamma', None)
      if 'kl' in r:
        r['kl'] = kl
    (folder / f'{prefix}metrics.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in rows))
    report = json.loads((folder / 'mnist_s0_sample_quality_two_stage.json').read_text())
    report.update(cfd_samples=cfd, cfd_samples_sd=0.75)
    (folder / f'{prefix}sample_quality_two_stage.json').write_text(json.dumps(report))

  made_up('mnist_s0_vae_xent_', 12.5, 101.25, likelihood='bernoulli')
  for seed, (kl, cfd) in enumerate([(7.0, 90.0), (8.0, 94.0)]):
    made_up(f'mnist_s{seed}_vae_fixed_gamma_', kl, cfd, learn_gamma=False, log_gamma=0.0)
  lines = render_results.dai2019_dense_baselines(str(folder)).split('\n')
  assert lines[0].startswith('| dense first stage, 400 epochs | CFD of samples | seeds | final γ |')
  assert lines[2:] == [
      '| MNIST: VAE, cross-entropy | 101.2 ± 0.8 (bootstrap) | 1 | — | 12.5 | 23.8 |',
      '| MNIST: VAE, fixed γ = 1 | 92.0 ± 2.8 (over seeds) | 2 | 1.0000 ± 0.0000 | 7.5 ± 0.7 | 51.2 |',
      '| MNIST: VAE, learned γ | 183.1 ± 4.1 (over seeds) | 3 | 0.0434 ± 0.0005 | 136.6 ± 3.8 | 47.0 |',
      '| MNIST: two-stage VAE (its first stage: the row above) | 66.9 ± 3.6 (over seeds) | 3 |  |  '
      '| 13.4 |']  # The learned-γ and two-stage cells as in the seeds and CFD tables.
