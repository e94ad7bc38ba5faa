"""RESULTS.md's rendered tables against the committed records they are built from."""

import json
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
  assert changed == ['dai2019_dense_cfd']
  assert '**72.0 ± 0.8**' in new and '**67.2 ± 4.2**' in new  # The seed's cell and the mean.


def test_markers_are_checked():
  with pytest.raises(ValueError, match="table 'nope' that render_results does not know"):
    render_results.render('<!-- table nope -->\n<!-- end table nope -->')
  with pytest.raises(ValueError, match="has no line '<!-- end table dai2019_dense_cfd -->'"):
    render_results.render('<!-- table dai2019_dense_cfd -->\n| a |')
  assert render_results.render('| prose and a hand table |') == ('| prose and a hand table |', [])
