"""The notebooks run top to bottom in a real Jupyter kernel (nbclient), in smoke mode: a cell after the
one tagged `parameters` sets SMOKE = True and where the results go; the test then checks what the
notebook produced (its numbers and its figures), not only that it ran."""

import json
import os
import time

import numpy as np
import pytest

nbclient = pytest.importorskip('nbclient')
nbformat = pytest.importorskip('nbformat')

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = os.path.join(ROOT, 'notebooks')
# The notebooks read static MNIST offline from ../shared (as CI has it); without it they would
# download it, and tests never touch the network.
STATIC_MNIST = os.path.join(ROOT, '..', 'shared', 'data', 'binarized_mnist')
needs_static_mnist = pytest.mark.skipif(not os.path.isdir(STATIC_MNIST),
                                        reason='needs ../shared/data/binarized_mnist')


def run_notebook(name: str, tmp_path, **overrides):
  """Executes notebooks/NAME.ipynb from the notebooks folder with `overrides` (and SMOKE = True)
  set after its parameters cell; returns (the executed notebook, seconds)."""
  nb = nbformat.read(os.path.join(NOTEBOOKS, f'{name}.ipynb'), as_version=4)
  index = next(i for i, c in enumerate(nb.cells) if 'parameters' in c.metadata.get('tags', []))
  values = dict(SMOKE=True, **overrides)
  source = '\n'.join(f'{k} = {v!r}' for k, v in values.items())
  nb.cells.insert(index + 1, nbformat.v4.new_code_cell(source))
  start = time.time()
  client = nbclient.NotebookClient(nb, timeout=600, kernel_name='python3',
                                   resources={'metadata': {'path': NOTEBOOKS}})
  client.execute()
  return nb, time.time() - start


def _images(nb) -> int:
  return sum('image/png' in out.get('data', {}) for c in nb.cells if c.cell_type == 'code'
             for out in c.get('outputs', []))


@needs_static_mnist
def test_quickstart_notebook_trains_evaluates_and_shows_its_figures(tmp_path):
  results = tmp_path / 'results.json'
  nb, seconds = run_notebook('quickstart', tmp_path, RESULTS_JSON=str(results),
                             WORKDIR=str(tmp_path / 'workdir'))
  summary = json.loads(results.read_text())
  for run in ('loop', 'binaries'):
    nll, elbo = summary[run]['nll'], summary[run]['elbo']
    assert np.isfinite(nll) and np.isfinite(elbo), summary
    assert -nll >= elbo - 1e-3, summary  # log p(x) >= ELBO: the importance-weighted bound is tighter.
  assert summary['num_steps'] == 30 and summary['num_samples'] == 20
  # Training images, the ELBO curve, samples/reconstructions, samples.png.
  assert _images(nb) >= 4
  assert os.path.exists(tmp_path / 'workdir' / 'samples.png')
  print(f'quickstart notebook, smoke mode: {seconds:.0f} s')


def test_notebooks_are_stored_without_outputs():
  """Outputs stay out of git: every stored code cell has none and no execution count."""
  names = [n for n in os.listdir(NOTEBOOKS) if n.endswith('.ipynb')]
  assert names
  for name in names:
    nb = nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)
    for cell in nb.cells:
      if cell.cell_type == 'code':
        assert cell.outputs == [] and cell.execution_count is None, (name, cell.source[:60])
