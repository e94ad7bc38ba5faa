"""The notebooks run top to bottom in a real Jupyter kernel (nbclient), in smoke mode: a cell after the
one tagged `parameters` sets SMOKE = True and where the results go; the test then checks what the
notebook produced (its numbers and its figures), not only that it ran.

The kernel sees one CPU device, except for the quickstart's, which sees the suite's 4 simulated
devices: the quickstart is the notebook with its own sharded loop, and every notebook reaches the
mesh through the same `sharding` calls, which the rest of the suite tests on 4 devices. Simulated
devices share the CI machine's 2 cores: on one device the five paper notebooks' tests take a little
over half the time they take on four."""

import json
import os
import time

import numpy as np
import pytest

import helpers

nbclient = pytest.importorskip('nbclient')
nbformat = pytest.importorskip('nbformat')

ROOT = helpers.ROOT
NOTEBOOKS = os.path.join(ROOT, 'notebooks')
# The notebooks read static MNIST offline from ../shared (as CI has it); without it they would
# download it, and tests never touch the network.
STATIC_MNIST = os.path.join(ROOT, '..', 'shared', 'data', 'binarized_mnist')
needs_static_mnist = pytest.mark.skipif(not os.path.isdir(STATIC_MNIST),
                                        reason='needs ../shared/data/binarized_mnist')
MNIST = os.path.join(ROOT, '..', 'shared', 'data', 'mnist')
needs_mnist = pytest.mark.skipif(not os.path.isdir(MNIST), reason='needs ../shared/data/mnist')


def run_notebook(name: str, tmp_path, devices: int = 1, **overrides):
  """Executes notebooks/NAME.ipynb from the notebooks folder in smoke mode (SMOKE = True, WORKDIR
  and RESULTS_JSON under tmp_path, the suite's DATA_CACHE, and `overrides`, set after its
  parameters cell) in a kernel that sees `devices` CPU devices; checks that the notebook reports
  them, prints the time it took and returns (the executed notebook, the summary the notebook wrote
  to RESULTS_JSON)."""
  nb = nbformat.read(os.path.join(NOTEBOOKS, f'{name}.ipynb'), as_version=4)
  index = next(i for i, c in enumerate(nb.cells) if 'parameters' in c.metadata.get('tags', []))
  results = tmp_path / 'results.json'
  values = dict(SMOKE=True, RESULTS_JSON=str(results), WORKDIR=str(tmp_path / 'workdir'),
                DATA_CACHE=os.environ['VAEPRIOR_JAX_TEST_DATA_CACHE'], **overrides)
  source = '\n'.join(f'{k} = {v!r}' for k, v in values.items())
  nb.cells.insert(index + 1, nbformat.v4.new_code_cell(source))
  start = time.time()
  client = nbclient.NotebookClient(nb, timeout=600, kernel_name='python3',
                                   resources={'metadata': {'path': NOTEBOOKS}})
  client.execute(env=helpers.subprocess_environment(devices))
  print(f'{name} notebook, smoke mode, {devices} device(s): {time.time() - start:.0f} s')
  summary = json.loads(results.read_text())
  assert summary['devices'] == f'{devices} x cpu', summary['devices']
  return nb, summary


def _text(nb) -> str:
  """What the notebook's cells printed."""
  return ''.join(out.get('text', '') for c in nb.cells if c.cell_type == 'code'
                 for out in c.get('outputs', []))


def _images(nb) -> int:
  return sum('image/png' in out.get('data', {}) for c in nb.cells if c.cell_type == 'code'
             for out in c.get('outputs', []))


@needs_static_mnist
def test_quickstart_notebook_trains_evaluates_and_shows_its_figures(tmp_path):
  nb, summary = run_notebook('quickstart', tmp_path, devices=4)
  for run in ('loop', 'binaries'):
    nll, elbo = summary[run]['nll'], summary[run]['elbo']
    assert np.isfinite(nll) and np.isfinite(elbo), summary
    assert -nll >= elbo - 1e-3, summary  # log p(x) >= ELBO: the importance-weighted bound is tighter.
  assert summary['num_steps'] == 30 and summary['num_samples'] == 20
  # Section 4: the same config on an .npz of its own (32 of the 1,000 test images written there).
  own = summary['own_arrays']
  assert np.isfinite(own['nll']) and -own['nll'] >= own['elbo'] - 1e-3 and own['num_examples'] == 32
  # Training images, the ELBO curve, samples/reconstructions, samples.png.
  assert _images(nb) >= 4
  assert os.path.exists(tmp_path / 'workdir' / 'samples.png')


def test_notebooks_are_stored_without_outputs():
  """Outputs stay out of git: every stored code cell has none and no execution count."""
  names = [n for n in os.listdir(NOTEBOOKS) if n.endswith('.ipynb')]
  assert names
  for name in names:
    nb = nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)
    for cell in nb.cells:
      if cell.cell_type == 'code':
        assert cell.outputs == [] and cell.execution_count is None, (name, cell.source[:60])


@needs_static_mnist
def test_xu2019_notebook_compares_the_priors_and_draws_figures_2_and_3(tmp_path):
  nb, summary = run_notebook('xu2019', tmp_path)
  assert set(summary['runs']) == {'standard', 'rnvp_prior'}
  for name, run in summary['runs'].items():
    assert np.isfinite(run['nll']) and -run['nll'] >= run['elbo'] - 1e-3, (name, run)
    assert run['num_examples'] == 32 and run['analysis_examples'] == 256, (name, run)
    assert run['mean_posterior_std'] > 0 and run['mean_normalized_distance'] > 0, (name, run)
    assert np.isfinite(run['log_pz_range']) and run['log_pz_range'] > 0, (name, run)
  # NLL bars, the interpolation heat-maps, the two histograms, the samples.
  assert _images(nb) >= 4


@needs_static_mnist
def test_tomczak2018_notebook_compares_vampprior_and_shows_its_pseudo_inputs(tmp_path):
  nb, summary = run_notebook('tomczak2018', tmp_path)
  assert set(summary['runs']) == {'standard', 'vampprior'}
  for name, run in summary['runs'].items():
    assert np.isfinite(run['nll']) and -run['nll'] >= run['elbo'] - 1e-3, (name, run)
    assert run['kl'] >= 0 and run['num_examples'] == 32, (name, run)
  # The runlocal config's K = 5 pseudo-inputs, images of MNIST's shape.
  assert summary['num_pseudo_inputs'] == 5 and summary['pseudo_input_shape'] == [28, 28, 1]
  assert np.isfinite(summary['coverage']) and summary['coverage'] > 0
  # NLL bars, the pseudo-inputs, the components among the posteriors, the samples.
  assert _images(nb) >= 4


@needs_mnist
def test_dai2019_notebook_trains_both_stages_and_draws_gamma_spectra_and_samples(tmp_path):
  nb, summary = run_notebook('dai2019', tmp_path)
  # 4 first-stage steps, then the second stage's; gamma logged every 2 steps (in both stages).
  assert summary['step'] > summary['first_stage_steps'] == 4, summary
  assert summary['gamma_points'] >= 6 and summary['gamma_z_points'] >= 6, summary
  assert 0 < summary['gamma'] < 10 and 0 < summary['gamma_z'] < 10, summary
  assert summary['spectrum_examples'] == 256
  distances = summary['distance_to_standard_normal']
  assert set(distances) == {'q_z', 'q_u'} and all(np.isfinite(list(distances.values())))
  assert summary['samples_in_range']  # decoder means: sigmoid outputs
  # gamma and the spectra, the two rows of samples.
  assert _images(nb) >= 2


@needs_static_mnist
def test_compare_priors_notebook_evaluates_every_prior_of_the_library(tmp_path):
  from vaeprior_jax import priors  # pylint: disable=g-import-not-at-top
  nb, summary = run_notebook('compare_priors', tmp_path)
  assert set(summary['runs']) == set(priors.PRIORS)
  for name, run in summary['runs'].items():
    assert np.isfinite(run['nll']) and -run['nll'] >= run['elbo'] - 1e-3, (name, run)
    assert run['num_examples'] == 32 and run['train_seconds'] > 0, (name, run)
    assert 0 <= run['active_units'] <= 4, (name, run)  # runlocal's latent size
  # The pull-back NLL with either log Z estimate: the same computation shifted by their difference.
  pullback = summary['runs']['pullback']
  assert np.isfinite(pullback['log_z']) and np.isfinite(pullback['nll_with_prior_log_z'])
  assert pullback['nll_with_prior_log_z'] - pullback['nll'] == pytest.approx(
      pullback['log_z_prior'] - pullback['log_z'], abs=1e-3)
  assert 'with the prior-based one' in _text(nb)
  assert np.isfinite(pullback['nll_ais_lower']) and np.isfinite(pullback['nll_ais_upper'])
  assert _images(nb) >= 1  # the five panels
  assert 'committed records of' in _text(nb)  # Section 3 read the leaderboard's records.


@needs_static_mnist
def test_vaepp_notebook_draws_the_critic_on_interpolations_mala_chains_and_samples(tmp_path):
  nb, summary = run_notebook('vaepp', tmp_path)
  assert np.isfinite(summary['nll']) and -summary['nll'] >= summary['elbo'] - 1e-3, summary
  assert summary['num_examples'] == 32
  assert np.isfinite(summary['log_z']) and np.isfinite(summary['log_z_prior']), summary
  # The plotted curves obey the prior's definition: log p(z) = log N(z) - beta D(G(z)) - log Z.
  assert len(summary['interpolation']) == 3
  for curve in summary['interpolation']:
    expected = (np.array(curve['log_base']) - summary['beta'] * np.array(curve['critic'])
                - summary['log_z'])
    np.testing.assert_allclose(curve['log_prior'], expected, rtol=1e-4, atol=1e-3)
    assert len(curve['critic']) == 12
  # 4 MALA steps traced every step after 2 adaptation steps, plus the start.
  assert summary['trace_length'] == 5 and 0 < summary['mala_acceptance'] <= 1, summary
  assert summary['mala_step_size'] > 0 and summary['samples_in_range']
  # The NLL bars, D along the interpolations, the chains, the three rows of samples.
  assert _images(nb) >= 4
