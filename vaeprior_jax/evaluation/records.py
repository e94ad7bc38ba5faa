"""Every reported number as a record: what was measured, on what, by which code, how.

`experiments.evaluate` (`report.evaluate`, `report.sample_quality`) appends one JSON line per result
to `WORKDIR/records.jsonl`: the kind of result, the run's entry and whole config, the overrides of
this evaluation, the budget trained (the checkpoint's step and epochs), the protocol (samples,
examples, subset seed, estimator settings), the metrics, and `provenance()`: the commit of the
library's checkout and whether its tree had changes, the versions of the packages the numbers
depend on, the devices and the date. A table built from records can say exactly where each number
came from.
"""

import datetime
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from typing import Any, Dict, Optional

from vaeprior_jax import files

RECORDS_FILE = 'records.jsonl'
# The packages a result depends on (their installed versions go into every record).
PACKAGES = ('jax', 'jaxlib', 'flax', 'optax', 'orbax-checkpoint', 'numpy', 'scipy', 'blackjax',
            'tensorflow', 'tensorflow-datasets', 'ml-collections')


def _git(*args: str) -> Optional[str]:
  """`git args` in the library's checkout, or None (no git, or not a checkout)."""
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  try:
    out = subprocess.run(['git', '-C', root, *args], capture_output=True, text=True, timeout=10,
                         check=True)
  except (OSError, subprocess.SubprocessError):
    return None
  return out.stdout.strip()


def provenance() -> Dict[str, Any]:
  """{'commit', 'dirty' (uncommitted changes to tracked files), 'versions', 'python', 'devices',
  'host', 'date' (UTC, ISO 8601)}; commit and dirty are None outside a git checkout."""
  import jax  # pylint: disable=g-import-not-at-top
  commit = _git('rev-parse', 'HEAD')
  status = _git('status', '--porcelain', '--untracked-files=no') if commit else None
  versions = {}
  for name in PACKAGES:
    try:
      versions[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      versions[name] = None
  devices = jax.devices()
  return {'commit': commit, 'dirty': bool(status) if status is not None else None,
          'versions': versions, 'python': sys.version.split()[0],
          'devices': {'platform': devices[0].platform, 'kind': devices[0].device_kind,
                      'count': len(devices), 'processes': jax.process_count()},
          'host': platform.node(),
          'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}


def append(workdir: str, kind: str, config, metrics: Dict[str, Any], protocol: Dict[str, Any],
           overrides: Optional[Dict[str, Any]] = None, budget: Optional[Dict[str, Any]] = None
           ) -> Dict[str, Any]:
  """Appends the record of one result (`kind`: e.g. 'likelihood', 'sample_quality') to
  `workdir/records.jsonl` from process 0 (one line, flushed to disk); returns it."""
  import jax  # pylint: disable=g-import-not-at-top
  record = {'kind': kind, 'entry': config.get('entry', ''), 'workdir': os.path.abspath(workdir),
            'budget': budget or {}, 'protocol': protocol, 'overrides': overrides or {},
            'metrics': metrics, 'provenance': provenance(),
            'config': config.to_dict() if hasattr(config, 'to_dict') else dict(config)}
  if jax.process_index() == 0:
    line = json.dumps(record, default=_plain) + '\n'
    with open(os.path.join(workdir, RECORDS_FILE), 'a') as f:
      f.write(line)
      f.flush()
      os.fsync(f.fileno())
  return record


def read(workdir: str) -> list:
  """The records of `workdir`, oldest first (a torn last line, from a kill, is skipped)."""
  path = os.path.join(workdir, RECORDS_FILE)
  return files.read_jsonl(path) if os.path.exists(path) else []


def train_seconds(workdir: str, step: int) -> Optional[float]:
  """Wall seconds of the training loop up to `step`, from `workdir/metrics.jsonl`: the sum over its
  logged windows of (steps in the window) / steps_per_sec. The windows hold the compilation (in a
  process's first), validations and checkpoints, but not the time between a kill and its resume,
  nor data loading. None without a metrics file or rates."""
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.exists(path):
    return None
  rates = {}
  for row in files.read_jsonl(path):
    if 'steps_per_sec' in row and 'step' in row and row['step'] <= step:
      rates[int(row['step'])] = float(row['steps_per_sec'])  # A resumed run's repeat wins.
  if not rates:
    return None
  total, previous = 0.0, 0
  for at in sorted(rates):
    total += (at - previous) / rates[at]
    previous = at
  return total


def _plain(value):
  """JSON for what `json` does not know: numpy and JAX scalars and arrays, tuples of them."""
  try:
    return value.tolist()
  except AttributeError:
    return str(value)
