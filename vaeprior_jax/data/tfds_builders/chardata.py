"""Reading Burda et al.'s Omniglot file `chardata.mat` (see `burda_omniglot` for the dataset).

Layout (a MATLAB v5 file):
  data [784, 24345], testdata [784, 8070]   one image per column, pixel values in [0, 1], each column
                                            the 28x28 image flattened in column-major (Fortran) order;
  target [50, N], testtarget [50, M]        one-hot alphabet of each image;
  targetchar [1, N], testtargetchar [1, M]  character index within its alphabet (1-based).
"""


import numpy as np

FILENAME = 'chardata.mat'
URL = 'https://github.com/yburda/iwae/raw/master/datasets/OMNIGLOT/chardata.mat'
NUM_TRAIN, NUM_TEST, NUM_ALPHABETS = 24345, 8070, 50
LAYOUT = ('a MATLAB v5 file with data [784, 24345] and testdata [784, 8070] (28x28 images in columns, '
          'column-major, values in [0, 1]), target [50, 24345] / testtarget [50, 8070] (one-hot '
          'alphabets) and targetchar / testtargetchar [1, N] (character indices)')
SPLIT_KEYS = {'train': ('data', 'target', 'targetchar'),
              'test': ('testdata', 'testtarget', 'testtargetchar')}


class LayoutError(ValueError):
  """chardata.mat does not hold what it should."""


def read_chardata(path: str, expected_sizes=None):
  """{'train': (images [N, 28, 28, 1] float32, alphabet [N], character [N]), 'test': ...}.

  Raises LayoutError naming the file, what is wrong, and the expected layout. `expected_sizes`
  ({'train': N, 'test': M}; default the real file's) can be relaxed for small test files.
  """
  import scipy.io  # pylint: disable=g-import-not-at-top
  expected_sizes = expected_sizes or {'train': NUM_TRAIN, 'test': NUM_TEST}
  try:
    mat = scipy.io.loadmat(path)
  except Exception as e:  # pylint: disable=broad-except
    raise LayoutError(f'Cannot read {path} as a MATLAB file ({e}); expected {LAYOUT}.') from e
  out = {}
  for split, (image_key, target_key, char_key) in SPLIT_KEYS.items():
    missing = [k for k in (image_key, target_key, char_key) if k not in mat]
    if missing:
      raise LayoutError(f'{path} has no {", ".join(missing)}; expected {LAYOUT}.')
    images, target, chars = mat[image_key], mat[target_key], mat[char_key]
    n = expected_sizes[split]
    checks = ((image_key, images, (784, n)), (target_key, target, (NUM_ALPHABETS, n)),
              (char_key, chars, (1, n)))
    for key, value, shape in checks:
      if value.shape != shape:
        raise LayoutError(f'{path}: {key} has shape {value.shape}, expected {shape}; the file should '
                          f'hold {LAYOUT}.')
    if not np.all(np.isfinite(images)) or images.min() < 0 or images.max() > 1:
      raise LayoutError(f'{path}: {image_key} holds values outside [0, 1]; expected {LAYOUT}.')
    # Columns are column-major 28x28 images: row-major [N, 28, 28] is the transpose of each.
    images = images.T.reshape(n, 28, 28).transpose(0, 2, 1)[..., None].astype(np.float32)
    out[split] = (images, np.argmax(target, axis=0).astype(np.int64),
                  chars[0].astype(np.int64))
  return out


