"""Your own data: the splits of `data.dataset=arrays` from one `.npz` file (`data.path`).

The file holds `x_train` and `x_test`, and optionally `x_validation` (else a seeded part of `x_train`
is held out, as for MNIST) and integer labels `y_train`, `y_validation`, `y_test` (one per example;
with y_train and y_test, the sample-quality report's classifier distance trains on them). Each `x_*`
is images [N, H, W, C] or vectors [N, D] of the same shape in every split: uint8 (0..255, read as
k / 255), bool, or float in [0, 1]. Arrays whose every value is
0 or 1 (after that scaling) are binary and used as they are; others hold levels, binarized like
MNIST's grey levels with `data.binarize` (anew at every step, the test split a fixed number of
times), or kept as levels for the Gaussian or discretized-logistic likelihoods.

The file is read with `np.load(allow_pickle=False)`: nothing in it is executed. Every key, dtype,
shape, value and size is checked first; a bad one is a one-line `ValueError` naming the file, the key
and the value, before anything is compiled. Vectors are read as images [N, D, 1, 1], so that the
dense nets, the likelihoods and the sample grids take them unchanged (a convolutional net refuses
that shape with one line).
"""

import dataclasses
import os
import zipfile
from typing import Dict, Optional, Tuple

import numpy as np

IMAGE_KEYS = ('x_train', 'x_validation', 'x_test')
LABEL_KEYS = ('y_train', 'y_validation', 'y_test')
REQUIRED = ('x_train', 'x_test')
# The share of the machine's memory the splits may take as float32 (the training pipeline and the
# model need the rest).
MEMORY_SHARE = 0.5


@dataclasses.dataclass(frozen=True)
class Contents:
  """What a checked file holds: the splits as float32 in [0, 1] ({'train', 'validation' (None if
  absent), 'test'}), whether every value is 0 or 1, the example shape, and the labels given
  ({'train': y_train, ...}, int32)."""
  splits: Dict[str, Optional[np.ndarray]]
  binary: bool
  shape: Tuple[int, ...]
  labels: Dict[str, np.ndarray] = dataclasses.field(default_factory=dict)  # {split: y}, as given


def memory_bytes() -> int:
  """The machine's physical memory in bytes (0 where it cannot be read)."""
  try:
    return int(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES'))
  except (ValueError, OSError, AttributeError):
    return 0


def _fail(path: str, message: str):
  raise ValueError(f'data.path {path!r}: {message}')


def _member_sizes(path: str) -> Dict[str, int]:
  """{key: its array's size in bytes as stored} from the zip directory, before reading any."""
  try:
    with zipfile.ZipFile(path) as z:
      return {info.filename[:-len('.npy')]: info.file_size for info in z.infolist()
              if info.filename.endswith('.npy')}
  except (zipfile.BadZipFile, OSError) as e:
    _fail(path, f'not an .npz file (write it with np.savez): {e}.')


def read(path: str, max_bytes: Optional[int] = None) -> Contents:
  """The checked contents of the .npz at `path` (see the module docstring). max_bytes: the most
  the splits may take as float32 (default: MEMORY_SHARE of the machine's memory)."""
  if not path:
    raise ValueError('data.dataset=arrays needs data.path, an .npz file with x_train and x_test '
                     '(docs/data.md).')
  path = os.path.abspath(os.path.expanduser(path))
  if not os.path.isfile(path):
    _fail(path, 'no such file.')
  sizes = _member_sizes(path)
  unknown = sorted(set(sizes) - set(IMAGE_KEYS + LABEL_KEYS))
  if unknown:
    _fail(path, f'unexpected key {unknown[0]!r}; allowed: {", ".join(IMAGE_KEYS + LABEL_KEYS)}.')
  for key in REQUIRED:
    if key not in sizes:
      _fail(path, f'missing key {key!r}; it has: {", ".join(sorted(sizes)) or "nothing"}.')
  max_bytes = max_bytes if max_bytes is not None else int(MEMORY_SHARE * memory_bytes())
  stored = sum(sizes.values())
  if max_bytes and stored > max_bytes:  # (float32 takes at least as much as uint8 stored.)
    _fail(path, f'its arrays take {stored / 2**30:.2f} GiB, more than the {max_bytes / 2**30:.2f} '
                'GiB this machine allows for data.')
  out, labels = {}, {}
  with np.load(path, allow_pickle=False) as f:
    for key in (k for k in IMAGE_KEYS + LABEL_KEYS if k in sizes):
      try:
        array = f[key]
      except ValueError as e:  # Object arrays need pickle, which is never allowed here.
        _fail(path, f'key {key!r} cannot be read without unpickling ({e}); store numeric arrays.')
      if key in LABEL_KEYS:
        labels[key] = array
        continue
      out[key] = _checked_images(path, key, array)
      if max_bytes and sum(a.nbytes for a in out.values()) > max_bytes:
        _fail(path, f'its arrays take more than the {max_bytes / 2**30:.2f} GiB this machine '
                    'allows for data, as float32.')
  shape = out['x_train'].shape[1:]
  for key, array in out.items():
    if array.shape[1:] != shape:
      _fail(path, f'{key} has examples of shape {array.shape[1:]}, x_train {shape}; every split '
                  'must have the same.')
  for key, y in labels.items():
    x_key = 'x' + key[1:]
    if x_key not in out:
      _fail(path, f'{key} without {x_key}.')
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) or len(y) != len(out[x_key]):
      _fail(path, f'{key} must be integer labels, one per example of {x_key} '
                  f'({len(out[x_key])}); got dtype {y.dtype}, shape {y.shape}.')
  binary = all(bool(np.all((a == 0) | (a == 1))) for a in out.values())
  if len(shape) == 1:  # Vectors [N, D] as images [N, D, 1, 1]: every net and grid takes them so.
    out = {k: a.reshape(a.shape + (1, 1)) for k, a in out.items()}
    shape = out['x_train'].shape[1:]
  splits = {'train': out['x_train'], 'validation': out.get('x_validation'), 'test': out['x_test']}
  return Contents(splits, binary, tuple(int(s) for s in shape),
                  {key[2:]: y.astype(np.int32) for key, y in labels.items()})


def _checked_images(path: str, key: str, array: np.ndarray) -> np.ndarray:
  """`array` as float32 in [0, 1], or a one-line error naming what is wrong with it."""
  if array.ndim not in (2, 4):
    _fail(path, f'{key} has shape {array.shape}; expected images [N, H, W, C] or vectors [N, D].')
  if not len(array):
    _fail(path, f'{key} is empty.')
  if array.dtype == np.uint8:
    return array.astype(np.float32) / 255.0
  if array.dtype == np.bool_:
    return array.astype(np.float32)
  if not np.issubdtype(array.dtype, np.floating):
    _fail(path, f'{key} has dtype {array.dtype}; allowed: uint8 (0..255), bool, or float in '
                '[0, 1].')
  finite = np.isfinite(array)
  if not finite.all():
    _fail(path, f'{key} holds {int(np.size(array) - finite.sum())} values that are NaN or '
                'infinite.')
  low, high = float(array.min()), float(array.max())
  if low < 0 or high > 1:
    _fail(path, f'{key} holds values in [{low:g}, {high:g}]; float arrays must be in [0, 1] '
                '(uint8 arrays are read as 0..255).')
  return array.astype(np.float32)
