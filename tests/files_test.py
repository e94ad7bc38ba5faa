"""Atomic writes and the reading of kept partial work (`vaeprior_jax.files`)."""

import json
import os

import numpy as np

from vaeprior_jax import files


def test_atomic_writes_leave_the_whole_file_and_no_temporary(tmp_path):
  path = str(tmp_path / 'a.json')
  files.write_json_atomically(path, {'x': np.float32(1.5), 'n': 2})
  assert json.loads(open(path).read()) == {'x': 1.5, 'n': 2}
  files.write_text_atomically(path, 'replaced')
  assert open(path).read() == 'replaced'
  files.write_npz_atomically(str(tmp_path / 'b.npz'), compressed=True, a=np.arange(3))
  with np.load(tmp_path / 'b.npz') as f:
    np.testing.assert_array_equal(f['a'], np.arange(3))
  assert sorted(os.listdir(tmp_path)) == ['a.json', 'b.npz']


def test_kept_work_that_cannot_be_read_or_is_not_valid_is_started_over(tmp_path, caplog):
  path = str(tmp_path / 'kept.json')
  valid = lambda v: isinstance(v, dict) and isinstance(v.get('n'), int)
  assert files.read_kept_json(path, valid, 'partial sums') is None  # Absent: no warning.
  assert not caplog.records
  files.write_json_atomically(path, {'n': 3})
  assert files.read_kept_json(path, valid, 'partial sums') == {'n': 3}
  for text in ('{"n": 3.5}', '{"n": 3', ''):  # Another shape; torn; empty.
    files.write_text_atomically(path, text)
    assert files.read_kept_json(path, valid, 'partial sums') is None
  assert len(caplog.records) == 3
  assert all('Ignoring the unreadable partial sums in' in r.getMessage() for r in caplog.records)


def test_kept_arrays_are_read_back_only_for_their_protocol(tmp_path, caplog):
  import logging  # pylint: disable=g-import-not-at-top
  caplog.set_level(logging.INFO)
  path = str(tmp_path / 'kept.npz')
  assert files.read_kept_npz(path, '{"a": 1}', 'partial outputs') is None  # Absent: no line.
  assert not caplog.records
  files.write_kept_npz(path, '{"a": 1}', x=np.arange(4), y=np.ones(2))
  kept = files.read_kept_npz(path, '{"a": 1}', 'partial outputs')
  assert sorted(kept) == ['x', 'y']
  np.testing.assert_array_equal(kept['x'], np.arange(4))
  assert files.read_kept_npz(path, '{"a": 2}', 'partial outputs') is None
  assert 'Starting over: the partial outputs in' in caplog.records[-1].getMessage()
  files.write_text_atomically(path, 'not an npz')
  assert files.read_kept_npz(path, '{"a": 1}', 'partial outputs') is None
  assert 'Ignoring the unreadable partial outputs in' in caplog.records[-1].getMessage()


def test_json_lines_are_read_in_order_and_a_torn_line_is_skipped(tmp_path):
  path = tmp_path / 'm.jsonl'
  path.write_text('{"step": 1}\n[2, 3]\n{"step": 4, "torn')
  assert files.read_jsonl(str(path)) == [{'step': 1}, [2, 3]]
