"""Atomic writes: a file is replaced whole or not at all.

Readers of a workdir (another process of a multi-host run, or this run resumed after a kill) find
the old file or the new one, never a half-written one: each writer writes a temporary file beside
the target and renames it over it (`os.replace`, atomic on POSIX file systems).
"""

import json
import os
from typing import Any, Callable, Dict, List, Optional

from absl import logging
import numpy as np


def write_text_atomically(path: str, text: str) -> None:
  """Writes `text` to `path` atomically."""
  tmp = f'{path}.tmp{os.getpid()}'
  with open(tmp, 'w') as f:
    f.write(text)
  os.replace(tmp, path)


def write_json_atomically(path: str, value) -> None:
  """`value` as JSON at `path`, atomically; numpy scalars and other numbers as floats."""
  write_text_atomically(path, json.dumps(value, default=float))


def write_npz_atomically(path: str, compressed: bool = False, **arrays) -> None:
  """`np.savez(path, **arrays)` (`np.savez_compressed` with `compressed`), atomically; `path`
  should end in .npz."""
  tmp = f'{path}.tmp{os.getpid()}.npz'
  (np.savez_compressed if compressed else np.savez)(tmp, **arrays)
  os.replace(tmp, path)


def read_kept_json(path: str, valid: Callable[[Any], bool], what: str) -> Optional[Any]:
  """The JSON value at `path` if it exists and `valid(value)`, else None: kept partial work (`what`
  names it in the warning) that cannot be read is started over, since a whole pass recomputes it."""
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      value = json.load(f)
    if valid(value):
      return value
    reason = 'unexpected contents'
  except ValueError as e:
    reason = str(e)
  logging.warning('Ignoring the unreadable %s in %s (%s).', what, path, reason)
  return None


def write_kept_npz(path: str, protocol: str, **arrays) -> None:
  """Kept partial work: `arrays` at `path` (.npz, atomically) with `protocol` (the JSON of what they
  depend on), for `read_kept_npz`."""
  write_npz_atomically(path, __protocol__=np.array(protocol), **arrays)


def read_kept_npz(path: str, protocol: str, what: str) -> Optional[Dict[str, np.ndarray]]:
  """The arrays `write_kept_npz` left at `path` for `protocol`, else None: one log line when they
  are for another protocol, a warning when the file cannot be read (`what` names the work in
  both); such work is started over."""
  if not os.path.exists(path):
    return None
  try:
    with np.load(path, allow_pickle=False) as kept:
      kept_protocol = str(kept['__protocol__'])
      if kept_protocol != protocol:
        logging.info('Starting over: the %s in %s is for another protocol (%s).', what, path,
                     kept_protocol)
        return None
      return {k: kept[k] for k in kept.files if k != '__protocol__'}
  except (ValueError, KeyError, OSError) as e:
    logging.warning('Ignoring the unreadable %s in %s (%s).', what, path, e)
    return None


def read_jsonl(path: str) -> List[Any]:
  """The values of a JSON-lines file, in order; a line that does not parse (a torn last line, from
  a kill) is skipped."""
  out = []
  with open(path) as f:
    for line in f:
      try:
        out.append(json.loads(line))
      except ValueError:
        continue
  return out
