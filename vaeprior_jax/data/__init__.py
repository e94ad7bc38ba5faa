"""Input pipelines: tensorflow-datasets builders read through tf.data (on the CPU; GPUs hidden from TF).

Training batches are a deterministic function of (seed, step): epoch e is a stateless shuffle of the
split seeded by (seed, e), batched with drop_remainder, so a run resumed at step s sees exactly the
batches an uninterrupted run sees from step s on.
"""

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import shutil
import socket
import sys
import tempfile
import urllib.parse
from typing import Iterator, Optional, Tuple

import numpy as np

from vaeprior_jax import config as config_lib
from vaeprior_jax import files
from vaeprior_jax.data import arrays as arrays_lib
from vaeprior_jax.data.tfds_builders import chardata


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """How a dataset is read. For tfds' own builders, files, URLs, sizes and SHA-256 come from tfds'
  registered checksums; the project's builders (`tfds_builders`) name their files here."""
  layout: str             # What the original files hold, for error messages.
  dynamic: bool = False   # Grey levels, binarized on the fly (App. B.1), vs. already binary.
  carve_validation: bool = False  # tfds has no validation split: take a random part of 'train'.
  validation_size: int = 0        # Its default size (data.validation_size = 0).
  continuous: bool = False        # Colour images in [0, 1] (kept as uint8 in memory), not binary.
  tfds_name: str = ''             # Builder name, when it differs from the dataset's name.
  files: Tuple[Tuple[str, str], ...] = ()  # (filename, URL) for builders without tfds checksums.
  image_size: int = 0             # > 0: center-crop `crop` pixels square and resize to this.
  crop: int = 0


_MNIST_FILES = ('the four gzipped idx files of {} (60,000 training and 10,000 test images, 28x28 grey '
                'levels, with labels)')
SPECS = {
    'binarized_mnist': DatasetSpec(
        '50,000 / 10,000 / 10,000 rows of 784 space-separated 0/1 values (28x28, row-major), the '
        'original .amat files of Larochelle & Murray (2011)'),
    'mnist': DatasetSpec(_MNIST_FILES.format("LeCun's MNIST"), dynamic=True, carve_validation=True,
                         validation_size=10000),
    'fashion_mnist': DatasetSpec(_MNIST_FILES.format('Fashion-MNIST'), dynamic=True,
                                 carve_validation=True, validation_size=10000),
    # Burda et al.'s 28x28 version (not tfds' 105x105 `omniglot`): see tfds_builders/burda_omniglot.
    'omniglot': DatasetSpec(
        chardata.LAYOUT, dynamic=True, carve_validation=True, validation_size=4000,
        tfds_name='burda_omniglot', files=((chardata.FILENAME, chardata.URL),)),
    'cifar10': DatasetSpec(
        'the CIFAR-10 binary version (cifar-10-batches-bin: 50,000 training and 10,000 test 32x32 '
        'colour images)', carve_validation=True, validation_size=5000, continuous=True),
    'celeb_a': DatasetSpec(
        'the aligned and cropped CelebA images (img_align_celeba.zip, 202,599 JPEGs of 178x218) with '
        'its partition, attribute, landmark and identity lists', continuous=True, image_size=64,
        crop=140),
    # Your own .npz (data.path): binary or levels, with or without a validation split, as the file
    # holds them (`spec_of`).
    'arrays': DatasetSpec(
        'an .npz of your own (data.path): x_train and x_test, optionally x_validation, as images '
        '[N, H, W, C] or vectors [N, D] (docs/data.md)', carve_validation=True),
}
DATASETS = tuple(SPECS)  # The library's own; `register_dataset` adds yours to SPECS.
# The share of the training split `arrays` holds out for validation when data.validation_size is 0
# and the file has no x_validation.
ARRAYS_VALIDATION_SHARE = 0.1
SPLITS = ('train', 'validation', 'test')


class DataError(RuntimeError):
  """A dataset is missing, corrupt, or cannot be downloaded."""


# TensorFlow's native start-up lines, written to the process's stderr before its logging starts:
# banners about oneDNN and CPU instructions, which `_tf` keeps out of the output.
_TF_BANNERS = ('oneDNN custom operations are on', 'All log messages before absl::InitializeLog',
               'cpu_feature_guard', 'To enable the following instructions')


@contextlib.contextmanager
def _without_native_banners():
  """Captures what native code writes to file descriptor 2 meanwhile, and writes it back without
  the lines of `_TF_BANNERS` (nothing else is dropped)."""
  try:
    sys.stderr.flush()
    saved = os.dup(2)
  except (OSError, ValueError):  # No real stderr (some notebooks): nothing to filter.
    yield
    return
  with tempfile.TemporaryFile() as captured:
    os.dup2(captured.fileno(), 2)
    try:
      yield
    finally:
      os.dup2(saved, 2)
      os.close(saved)
      captured.seek(0)
      kept = [line for line in captured.read().decode(errors='replace').splitlines(True)
              if not any(b in line for b in _TF_BANNERS)]
      if kept:
        sys.stderr.write(''.join(kept))


def _tf():
  try:
    with _without_native_banners():
      import tensorflow as tf  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise DataError('TensorFlow is not installed, and it is needed to prepare datasets with tfds '
                    'and for the tf.data training pipeline. Install the package with its '
                    'requirements (pip install -e .), or train with --config.train.on_device=True '
                    'and a --config.data.cache_dir that already holds the prepared dataset.') from e
  try:  # Keep TensorFlow off the accelerators: they belong to JAX.
    tf.config.set_visible_devices([], 'GPU')
  except RuntimeError:  # Already initialised; visible devices can no longer change.
    pass
  return tf


def hide_accelerators_from_tf():
  """Call before TensorFlow touches a GPU: TF must not grab the memory JAX uses (a no-op where
  TensorFlow is not installed)."""
  try:
    _tf()
  except DataError:
    pass


def file_sha256(path: str) -> str:
  """The SHA-256 of a file, hex, read in 4 MiB blocks."""
  h = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 22), b''):
      h.update(block)
  return h.hexdigest()


def _files(name: str, builder):
  """[(filename, url)] of the original files of dataset `name`."""
  spec = SPECS[name]
  if spec.files:
    return list(spec.files)
  return sorted((info.filename, url) for url, info in builder.url_infos.items())


def _download_instructions(name: str, builder) -> str:
  listing = '\n'.join(f'  {url}' for _, url in _files(name, builder))
  return (f'Download these files ({SPECS[name].layout}):\n{listing}\ninto one folder and pass it as '
          '--config.data.manual_dir=FOLDER (or `make demo MANUAL_DIR=FOLDER`).')


def check_manual_dir(name: str, builder, manual_dir: str):
  """Raises DataError naming the first missing or corrupt file of dataset `name` in manual_dir.

  Files with checksums registered in tfds are checked for size and SHA-256; the files of the
  project's own builders are checked for their layout when the builder reads them.
  """
  if not os.path.isdir(manual_dir):
    raise DataError(f'data.manual_dir {manual_dir!r} is not a folder. '
                    f'{_download_instructions(name, builder)}')
  for filename, url in _files(name, builder):
    path = os.path.join(manual_dir, filename)
    if not os.path.isfile(path):
      raise DataError(f'Missing data file {path}. {_download_instructions(name, builder)}')
    info = builder.url_infos.get(url) if builder.url_infos else None
    if info is None:
      continue
    size = int(info.size)
    if os.path.getsize(path) != size or file_sha256(path) != info.checksum:
      raise DataError(f'Corrupt data file {path}: expected {size} bytes with sha256 '
                      f'{info.checksum}, holding {SPECS[name].layout}. Download it again. '
                      f'{_download_instructions(name, builder)}')


def _arrays(data_config) -> 'arrays_lib.Contents':
  """The checked contents of `data.path`, read once per file version."""
  path = data_config.get('path') or ''
  path = os.path.abspath(os.path.expanduser(path)) if path else ''
  stamp = ((path, os.path.getmtime(path), os.path.getsize(path)) if os.path.isfile(path) else
           (path,))
  if stamp not in _ARRAYS_CACHE:
    _ARRAYS_CACHE.clear()
    _ARRAYS_CACHE[stamp] = arrays_lib.read(path)
  return _ARRAYS_CACHE[stamp]


_ARRAYS_CACHE = {}


def array_contents(data_config) -> 'arrays_lib.Contents':
  """The checked contents of a `data.dataset=arrays` config's file (splits, labels, shape)."""
  if data_config.dataset != 'arrays':
    raise ValueError(f'data.dataset={data_config.dataset} is not arrays.')
  return _arrays(data_config)


def identity(data_config) -> str:
  """What names the data of `data_config` for the classifiers and statistics kept for it: the
  dataset's name, for `arrays` with the SHA-256 of its file (another file: another identity)."""
  if data_config.dataset != 'arrays':
    return data_config.dataset
  path = os.path.abspath(os.path.expanduser(data_config.path))
  return f'arrays-{file_sha256(path)[:16]}'


def spec_of(data_config) -> DatasetSpec:
  """How `data_config.dataset` is read: its `SPECS` entry, for `arrays` completed from the file
  (levels are binarized like MNIST's grey levels; a file with x_validation has its own split)."""
  spec = SPECS[data_config.dataset]
  if data_config.dataset != 'arrays':
    return spec
  contents = _arrays(data_config)
  return dataclasses.replace(spec, dynamic=not contents.binary,
                             carve_validation=contents.splits['validation'] is None)


def register_dataset(name: str, spec: DatasetSpec, replace: bool = False) -> None:
  """Makes `data.dataset=name` read a tfds builder of your own: the builder registered with tfds as
  `spec.tfds_name or name` (defining its class in a module registers it; give the module to the
  binaries as --import=MODULE), prepared offline from `data.manual_dir`, which must hold the
  `spec.files` ((filename, URL or '') pairs). `spec` says how its images are read, as for the
  library's datasets: `dynamic` (grey levels binarized on the fly), `carve_validation` and
  `validation_size` (no validation split of its own), `continuous` (colour). A name taken raises,
  unless `replace`."""
  if not isinstance(name, str) or not name or name == 'arrays':
    raise ValueError(f'A dataset name must be a non-empty string other than arrays, got {name!r}.')
  if name in SPECS and not replace:
    raise ValueError(f'data.dataset {name!r} is registered already (pass replace=True to replace '
                     'it).')
  if not isinstance(spec, DatasetSpec):
    raise ValueError(f'register_dataset needs a data.DatasetSpec, got {type(spec).__name__}.')
  SPECS[name] = spec


def validate(data_config):
  if data_config.dataset not in SPECS:
    raise ValueError(f'Unknown data.dataset {data_config.dataset!r}; allowed: {", ".join(SPECS)} '
                     '(yours: data.register_dataset).')
  if data_config.dataset == 'arrays':
    _arrays(data_config)  # Every key, shape and value checked now, before anything is compiled.
  elif data_config.get('path'):
    raise ValueError(f'data.path is for data.dataset=arrays; data.dataset={data_config.dataset} '
                     'is read from data.manual_dir.')
  for key in ('validation_size', 'split_seed', 'test_binarization_seed'):
    config_lib.check_integer(data_config.get(key, 0), f'data.{key}', 0)
  if data_config.get('test_binarizations', 1) < 1:
    raise ValueError(f'data.test_binarizations must be >= 1, got '
                     f'{data_config.test_binarizations!r}.')
  crop = data_config.get('celeb_a_crop', SPECS['celeb_a'].crop)
  if data_config.dataset == 'celeb_a' and crop not in (128, 140):
    raise ValueError(f'data.celeb_a_crop must be 140 (WAE\'s centre crop) or 128 (Dai & Wipf\'s '
                     f'code), got {crop!r}.')


def check_validation_split(data_config, what: str) -> None:
  """Raises ValueError where `what` needs a validation split and `data_config` trains on the whole
  training split of a dataset that has none of its own (`data.hold_out_validation=False`)."""
  data_config = _complete(data_config)
  if spec_of(data_config).carve_validation and not data_config.hold_out_validation:
    raise ValueError(f'{what} needs a validation split, but data.hold_out_validation=False trains '
                     f'on the whole training split of {data_config.dataset}; set it to True.')


def _reachable(url: str, timeout: float = 5.0) -> bool:
  """Whether the host of `url` accepts a connection (tfds itself retries for minutes when offline)."""
  parsed = urllib.parse.urlparse(url)
  try:
    socket.create_connection((parsed.hostname, parsed.port or 80), timeout=timeout).close()
    return True
  except OSError:
    return False


def get_builder(data_config):
  """Returns the prepared tfds builder of `data_config.dataset`, preparing it if needed.

  With `data_config.manual_dir` the files are read from there (no network); otherwise tfds downloads
  them, and a failed download raises a DataError that says what to download and where to put it.
  """
  validate(data_config)
  _tf()
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from vaeprior_jax.data.tfds_builders import burda_omniglot  # pylint: disable=g-import-not-at-top
  del burda_omniglot  # Imported to register the project's builders with tfds.
  name = data_config.dataset
  spec = SPECS[name]
  make_builder = functools.partial(tfds.builder, spec.tfds_name or name,
                                   data_dir=data_config.get('data_dir') or None)
  builder = make_builder()
  if builder.is_prepared():
    return builder
  manual_dir = data_config.get('manual_dir') or None
  if manual_dir:
    manual_dir = os.path.abspath(os.path.expanduser(manual_dir))
    check_manual_dir(name, builder, manual_dir)
  elif spec.files:
    raise DataError(f'{name} is not prepared in the tfds data_dir and tfds cannot download it: set '
                    f'data.manual_dir. {_download_instructions(name, builder)}')
  else:
    url = sorted(builder.url_infos)[0]
    if not _reachable(url):
      raise DataError(f'{name} is not prepared in the tfds data_dir and '
                      f'{urllib.parse.urlparse(url).hostname} cannot be reached. '
                      f'{_download_instructions(name, builder)}')
  extract_dir = _private_extract_dir(builder, name) if manual_dir else None
  try:
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=manual_dir, extract_dir=extract_dir))
  except Exception as e:  # pylint: disable=broad-except
    # Another process (a second run, a notebook) may have prepared the same data_dir meanwhile:
    # tfds then fails to move this process's copy into place, and the copy in place is complete.
    builder = make_builder()
    if builder.is_prepared():
      return builder
    if manual_dir:
      raise DataError(f'Preparing {name} from {manual_dir} failed: {e}') from e
    raise DataError(f'Could not download {name} (no network?): {e}\n'
                    f'{_download_instructions(name, builder)}') from e
  finally:
    if extract_dir:
      shutil.rmtree(extract_dir, ignore_errors=True)
  return builder


def _private_extract_dir(builder, name: str) -> str:
  """A new folder for what tfds extracts while preparing `name` from a manual_dir.

  By default tfds extracts into one folder per data_dir (downloads/extracted), names each extracted
  file after the archive's file name only (GZIP.train-images-idx3-ubyte.gz), and reuses any file of
  that name it finds there. MNIST and Fashion-MNIST have the same file names: the dataset prepared
  second from a manual_dir would silently get the first one's images (and two processes preparing
  them at once would overwrite each other's files). Each preparation extracts into its own folder,
  removed when it is done: next to the data_dir's downloads on a local disk, else in the system's
  temporary folder."""
  root = str(builder.data_dir_root)
  parent = None
  if '://' not in root:
    parent = os.path.join(root, 'downloads')
    os.makedirs(parent, exist_ok=True)
  return tempfile.mkdtemp(prefix=f'extracted_{name}_', dir=parent)


def _crop_and_resize(image, crop: int, size: int):
  """Center crop `crop` x `crop` pixels, resize (area-averaging) to `size` x `size`, back to uint8."""
  tf = _tf()
  height, width = tf.shape(image)[0], tf.shape(image)[1]
  top, left = (height - crop) // 2, (width - crop) // 2
  image = tf.image.crop_to_bounding_box(image, top, left, crop, crop)
  image = tf.image.resize(image, (size, size), method='area')
  return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)


def load_split(builder, split: str, name: Optional[str] = None,
               crop: Optional[int] = None) -> np.ndarray:
  """A whole tfds split as [N, H, W, C]: float32 in [0, 1] (binary, or grey levels), or uint8 for the
  colour datasets (0..255, converted by `to_float` batch by batch: CelebA would take 10 GB as floats).
  crop: the centre crop of the datasets resized to a fixed size (CelebA; default the spec's)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  name = name or builder.name
  spec = SPECS[name]
  crop = crop or spec.crop
  ds = builder.as_dataset(split=split, shuffle_files=False)
  if spec.image_size:
    ds = ds.map(lambda e: {'image': _crop_and_resize(e['image'], crop, spec.image_size)})
  ds = ds.map(lambda e: e['image']).batch(8192)
  images = np.concatenate(list(tfds.as_numpy(ds)))
  if spec.continuous:
    return images.astype(np.uint8)
  if images.dtype == np.uint8 and spec.dynamic:
    images = images.astype(np.float32) / 255.0
    check_grey_levels(name, split, images)
    return images
  if images.size and (images.max() > 1 or images.min() < 0):
    raise DataError(f'{name}/{split} holds pixel values in [{images.min()}, {images.max()}]; '
                    f'expected values in [0, 1] ({spec.layout}).')
  return images.astype(np.float32)


# The mean grey level of each split of the original files (computed from them, in [0, 1]). MNIST's
# and Fashion-MNIST's files have the same names: a data_dir that tfds prepared without
# `_private_extract_dir` (e.g. `tfds build`) may hold one dataset made of the other's files.
_GREY_MEANS = {('mnist', 'train'): 0.13066, ('mnist', 'test'): 0.13251,
               ('fashion_mnist', 'train'): 0.28604, ('fashion_mnist', 'test'): 0.28685}


def check_grey_levels(name: str, split: str, images: np.ndarray):
  """Raises DataError if an MNIST or Fashion-MNIST split (grey levels in [0, 1], or their
  binarizations) does not have its files' mean grey level: it was prepared from the other dataset's
  files. A random part of 10,000 or more images has the whole split's mean to within ~0.001 (the
  training images left after the validation carve-out; the tolerance is 0.01). Other datasets, and
  fewer images (mock data), pass unchecked."""
  expected = _GREY_MEANS.get((name, split))
  if expected is None or len(images) < 10000:
    return
  mean = float(np.mean(images, dtype=np.float64))
  if abs(mean - expected) > 0.01:
    other = {k: v for (k, s), v in _GREY_MEANS.items() if s == split and k != name}
    raise DataError(f'The prepared {name}/{split} images have mean grey level {mean:.4f}, but '
                    f"{name}'s files have {expected:.4f} ("
                    + ', '.join(f'{k}: {v:.4f}' for k, v in other.items())
                    + '): this copy was prepared from other files (tfds reuses extracted files of '
                    'the same name, docs/data.md). Delete the dataset\'s folder in the tfds data_dir '
                    'and prepare it again.')


def to_float(images: np.ndarray) -> np.ndarray:
  """float32 in [0, 1]: uint8 pixels / 255; float images as they are."""
  if images.dtype == np.uint8:
    return images.astype(np.float32) / 255.0
  return np.asarray(images, np.float32)


def require_binary(data_config, what: str):
  """Raises ValueError if `data_config` asks for binarized images (`data.binarize`, the default) of a
  colour dataset, which has no binarized form: `what` is the model that would read them."""
  data_config = _complete(data_config)
  if spec_of(data_config).continuous and data_config.binarize:
    binary = ', '.join(n for n, s in SPECS.items() if not s.continuous)
    raise ValueError(f'data.dataset={data_config.dataset} holds colour images in [0, 1], but '
                     f'data.binarize=True asks {what} to model binary images; use one of {binary}, '
                     f'or data.binarize=False with a likelihood for [0, 1] values (model.likelihood='
                     f'gaussian, discretized_logistic, or bernoulli as a cross-entropy).')


def check_binary_targets(data_config, what: str) -> None:
  """For a likelihood of binary values (`what`): your own arrays of levels go to it only binarized
  (`data.binarize`); the papers' grey-level datasets may also be read as levels (a cross-entropy,
  as VAEPP's and Dai & Wipf's code do)."""
  data_config = _complete(data_config)
  if data_config.dataset == 'arrays' and not data_config.binarize and spec_of(data_config).dynamic:
    raise ValueError(f'data.path {data_config.path!r} holds levels, not 0/1 values, and {what} '
                     'models binary values: set data.binarize=True, or use '
                     'model.likelihood=gaussian or discretized_logistic for levels.')


def binarize(images: np.ndarray, seed) -> np.ndarray:
  """Pixel = 1 with probability equal to its intensity (Salakhutdinov & Murray, 2008).

  `seed`: anything `np.random.default_rng` takes (an int, or a sequence such as [seed, i]).
  """
  rng = np.random.default_rng(seed)
  return (rng.random(images.shape, dtype=np.float32) < images).astype(np.float32)


@dataclasses.dataclass
class Dataset:
  """The splits of one dataset, in memory (small image datasets), float32 [N, H, W, C] in [0, 1].

  With `dynamic`, train and validation hold grey levels that are binarized anew for each use (the
  training pipeline per step, `eval_images` per evaluation) and test holds its fixed binarizations.
  """
  name: str
  train: np.ndarray
  validation: np.ndarray
  test: np.ndarray
  dynamic: bool = False

  @property
  def input_shape(self) -> Tuple[int, int, int]:
    return tuple(self.train.shape[1:])

  def split(self, name: str) -> np.ndarray:
    if name not in SPLITS:
      raise ValueError(f'Unknown split {name!r}; allowed: {", ".join(SPLITS)}.')
    images = getattr(self, name)
    if not len(images):
      raise ValueError(f'The {name} split of {self.name} is empty (data.hold_out_validation=False '
                       'trains on the whole training split); use another split.')
    return images

  def eval_images(self, name: str, seed: int = 0) -> np.ndarray:
    """The images of a split as models see them: with `dynamic`, grey levels binarized with `seed`
    (the test split holds its fixed binarizations); otherwise as stored."""
    images = self.split(name)
    return binarize(images, seed) if self.dynamic and name != 'test' else images


# ------------------------------------------------------------------------------- array cache

CACHE_VERSION = 1


def cache_path(data_config) -> Optional[str]:
  """Where `load` keeps the prepared splits of `data_config` (`data.cache_dir`), or None."""
  data_config = _complete(data_config)
  cache_dir = data_config.cache_dir
  if not cache_dir or data_config.dataset == 'arrays':  # (Arrays already.)
    return None
  # Only the settings that change this dataset's splits: a static dataset has one cache file.
  spec = SPECS[data_config.dataset]
  binarized = spec.dynamic and data_config.binarize
  relevant = (('validation_size', 'split_seed') if spec.carve_validation else ()) + (
      ('test_binarizations', 'test_binarization_seed') if binarized else ())
  settings = {k: data_config.get(k) for k in ('dataset',) + relevant}
  if spec.dynamic and not binarized:  # (Only then: the binarized sets keep their older file names.)
    settings['binarize'] = False
  if spec.carve_validation and not data_config.hold_out_validation:  # (Likewise.)
    settings['hold_out_validation'] = False
  if data_config.dataset == 'celeb_a' and data_config.celeb_a_crop != SPECS['celeb_a'].crop:
    settings['celeb_a_crop'] = data_config.celeb_a_crop  # (Likewise.)
  settings['version'] = CACHE_VERSION
  digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
  return os.path.join(os.path.abspath(os.path.expanduser(cache_dir)),
                      f'{data_config.dataset}-{digest}.npz')


def as_uint8(images: np.ndarray) -> Tuple[Optional[np.ndarray], float]:
  """(stored, divisor) with images == float32(stored) / divisor exactly and stored uint8: 0/1 pixels
  (divisor 1), grey levels k/255 or uint8 pixels (divisor 255); (None, 1.0) for any other values."""
  if images.dtype == np.uint8:
    return images, 255.0
  images = np.asarray(images, np.float32)
  if np.all((images == 0) | (images == 1)):
    return images.astype(np.uint8), 1.0
  as_255 = np.round(images * 255.0)
  if np.all((as_255 >= 0) & (as_255 <= 255)) and np.array_equal(
      as_255.astype(np.uint8).astype(np.float32) / np.float32(255.0), images):
    return as_255.astype(np.uint8), 255.0
  return None, 1.0


def _encode(images: np.ndarray) -> Tuple[str, np.ndarray]:
  """(kind, compact array): 'uint8' (as loaded), 'bits' (0/1 pixels, packed), 'grey255' (k/255 as
  uint8) or 'float32'; `_decode` restores the array exactly."""
  if images.dtype == np.uint8:
    return 'uint8', images
  stored, divisor = as_uint8(images)
  if stored is None:
    return 'float32', np.asarray(images, np.float32)
  if divisor == 1.0:
    return 'bits', np.packbits(stored.reshape(-1))
  return 'grey255', stored


def _decode(kind: str, stored: np.ndarray, shape) -> np.ndarray:
  shape = tuple(int(s) for s in shape)
  if kind == 'bits':
    return np.unpackbits(stored, count=int(np.prod(shape))).reshape(shape).astype(np.float32)
  if kind == 'grey255':
    return (stored.astype(np.float32) / np.float32(255.0)).reshape(shape)
  return stored.reshape(shape)


def write_cache(dataset: 'Dataset', path: str):
  """Saves the splits of `dataset` to `path` (written to a temporary file, then renamed)."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  arrays = {'name': np.asarray(dataset.name), 'dynamic': np.asarray(dataset.dynamic)}
  for split in SPLITS:
    images = getattr(dataset, split)
    kind, stored = _encode(images)
    arrays.update({f'{split}_kind': np.asarray(kind), f'{split}_data': stored,
                   f'{split}_shape': np.asarray(images.shape)})
  files.write_npz_atomically(path, compressed=True, **arrays)


def read_cache(path: str, name: str) -> 'Dataset':
  """The Dataset saved by `write_cache`; raises DataError naming the file if it is unreadable."""
  try:
    with np.load(path) as f:
      if str(f['name']) != name:
        raise ValueError(f'it holds {str(f["name"])!r}, not {name!r}')
      splits = [_decode(str(f[f'{s}_kind']), f[f'{s}_data'], f[f'{s}_shape']) for s in SPLITS]
      dynamic = bool(f['dynamic'])
  except Exception as e:  # pylint: disable=broad-except
    raise DataError(f'The dataset cache {path} is unreadable ({e}); delete it to rebuild it from '
                    'the tfds data.') from e
  try:  # A cache written from a wrongly prepared copy (`check_grey_levels`).
    for split, images in zip(SPLITS, splits):
      check_grey_levels(name, split, images)
  except DataError as e:
    raise DataError(f'The dataset cache {path}: {e} Delete the cache file too.') from None
  return Dataset(name, *splits, dynamic)


def _complete(data_config):
  """`data_config` with the keys it leaves out taken from `config.defaults()`."""
  return config_lib.complete_section(data_config, 'data')


def load(data_config) -> Dataset:
  """Loads `data_config.dataset`. Where tfds has no validation split (App. B.1): a random part of
  `data.validation_size` training images (0 = the dataset's default: 10,000 for MNIST and
  FashionMNIST, 4,000 for Omniglot, 5,000 for CIFAR-10), chosen with `data.split_seed`; with
  `data.hold_out_validation=False` none is held out: 'train' is the whole training split (in the
  same seeded order) and 'validation' is empty. Grey-level
  test images are binarized `data.test_binarizations` (10) times with `data.test_binarization_seed`.

  With `data.cache_dir`, the prepared splits are also kept there as one .npz file per dataset and
  split settings (`cache_path`); later loads read it without TensorFlow or tfds. `arrays` (your
  .npz, `data.path`) is read from its file, checked by `data.arrays.read`.
  """
  data_config = _complete(data_config)
  validate(data_config)
  path = cache_path(data_config)
  if path and os.path.exists(path):
    return read_cache(path, data_config.dataset)
  if data_config.dataset == 'arrays':
    return _load_arrays(data_config)  # (Never cached: it is arrays already.)
  dataset = _load_from_tfds(data_config)
  if path and _process_index() == 0:
    write_cache(dataset, path)
  return dataset


def whole_splits(data_config) -> dict:
  """{split: images} of `data_config.dataset` as its files hold them: grey levels never binarized
  (the test images once), and 'train' with the images `load` carves out for validation (after the
  training images, in the seeded order of `load`'s split). The images that sample-quality protocols
  compare against (`evaluation.report.sample_quality`); one `load`."""
  data_config = _complete(data_config)  # (a copy)
  spec = spec_of(data_config)
  if spec.dynamic:
    data_config.binarize = False
  data_config.hold_out_validation = True  # (The same images, in the same order, either way.)
  dataset = load(data_config)
  splits = {split: dataset.split(split) for split in SPLITS}
  if spec.carve_validation:
    splits['train'] = np.concatenate([dataset.train, dataset.validation])
  return splits


def _process_index() -> int:
  import jax  # pylint: disable=g-import-not-at-top
  return jax.process_index()


def _load_arrays(data_config) -> Dataset:
  """`arrays`: the file's splits, a validation split carved from x_train where it has none."""
  contents, spec = _arrays(data_config), spec_of(data_config)
  train, validation, test = (contents.splits[s] for s in SPLITS)
  if validation is None:
    default = max(1, int(round(ARRAYS_VALIDATION_SHARE * len(train))))
    train, validation = _carve(train, data_config, default)
  return _with_test_binarizations('arrays', train, validation, test, spec, data_config)


def _carve(train: np.ndarray, data_config, default: int) -> Tuple[np.ndarray, np.ndarray]:
  """(train, validation): `data.validation_size` (0: `default`) seeded training images held out
  (none with data.hold_out_validation=False: the whole split, in the same seeded order)."""
  num_validation = int(data_config.validation_size or default)
  if not data_config.hold_out_validation:  # The whole training split, as Dai & Wipf's code.
    num_validation = 0
  elif not 0 < num_validation < len(train):
    raise ValueError(f'data.validation_size {num_validation} must be in (0, {len(train)}), the size '
                     f'of the training split of {data_config.dataset}.')
  order = np.random.default_rng(data_config.split_seed).permutation(len(train))
  return train[order[num_validation:]], train[order[:num_validation]]


def _with_test_binarizations(name, train, validation, test, spec, data_config) -> Dataset:
  """The Dataset; grey levels binarized on the fly have their test split binarized
  `data.test_binarizations` times now, with `data.test_binarization_seed`."""
  dynamic = spec.dynamic and data_config.binarize
  if dynamic:
    test_seed = data_config.test_binarization_seed
    test = np.concatenate([binarize(test, [test_seed, i])
                           for i in range(data_config.test_binarizations)])
  return Dataset(name, train, validation, test, dynamic)


def _load_from_tfds(data_config) -> Dataset:
  builder = get_builder(data_config)
  name = data_config.dataset
  spec = SPECS[name]
  if not spec.carve_validation:
    crop = data_config.celeb_a_crop if name == 'celeb_a' else None
    return Dataset(name, *(load_split(builder, s, name, crop) for s in SPLITS), spec.dynamic)
  train, validation = _carve(load_split(builder, 'train', name), data_config,
                             spec.validation_size)
  test = load_split(builder, 'test', name)
  return _with_test_binarizations(name, train, validation, test, spec, data_config)


def check_grey_proposal(data_config):
  """Raises ValueError unless `data_config` loads a grey-level dataset as grey levels, which
  `grey_proposal_pairs` needs."""
  data_config = _complete(data_config)
  if not spec_of(data_config).dynamic or data_config.binarize:
    grey = ', '.join(n for n, spec in SPECS.items() if spec.dynamic)
    raise ValueError(f'eval.proposal_input=grey needs a grey-level dataset ({grey}) loaded with '
                     f'data.binarize=False; got data.dataset={data_config.dataset}, '
                     f'data.binarize={data_config.binarize}.')


def grey_proposal_pairs(dataset: Dataset, data_config, split: str, seed: int = 0) -> np.ndarray:
  """VAEPP's evaluation of a model trained on grey levels (`data.binarize=False`): binarized targets
  x beside the grey images e they were drawn from, as [N, H, W, 2C] = Concat[x, e] (the encoder reads
  e, the likelihood scores x: `evaluation.estimators.make_batch_metrics(..., paired=True)`). The test split
  holds the binarizations a binarized run is tested on (`data.test_binarizations` times with
  `data.test_binarization_seed`, so both protocols score the same binary images); the others one
  binarization with `seed`."""
  data_config = _complete(data_config)
  check_grey_proposal(data_config)
  grey = dataset.split(split)
  if split == 'test':
    copies = range(data_config.test_binarizations)
    targets = np.concatenate([binarize(grey, [data_config.test_binarization_seed, i])
                              for i in copies])
    grey = np.concatenate([grey] * len(copies))
  else:
    targets = binarize(grey, seed)
  return np.concatenate([targets.astype(np.float32), grey.astype(np.float32)], axis=-1)


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
  if num_examples < batch_size:
    raise ValueError(f'train.batch_size {batch_size} is larger than the training split '
                     f'({num_examples} examples).')
  return num_examples // batch_size


def train_batches(images: np.ndarray, batch_size: int, seed: int, start_step: int = 0,
                  binarize_batches: bool = False, prefetch: int = 2,
                  rows: Optional[slice] = None) -> Iterator[np.ndarray]:
  """Endless float32 batches [batch_size, ...] of `images`, starting at global step `start_step`.

  With `binarize_batches`, the batch of step s is binarized with a stateless seed (seed, s): every
  epoch sees new binary images, and a resumed run sees the same ones as an uninterrupted run.
  With `rows` (a slice of [0, batch_size)), only those rows of each global batch are produced (one
  process's share of it, `sharding.process_slice`), identical to the same rows of the full batch.
  """
  tf = _tf()
  n = images.shape[0]
  per_epoch = steps_per_epoch(n, batch_size)
  first_epoch, offset = divmod(start_step, per_epoch)
  images = tf.constant(images)

  def epoch_indices(epoch):
    perm = tf.random.experimental.stateless_shuffle(
        tf.range(n, dtype=tf.int64), seed=tf.stack([tf.constant(seed, tf.int64), epoch]))
    return tf.data.Dataset.from_tensor_slices(perm).batch(batch_size, drop_remainder=True)

  ds = tf.data.Dataset.range(first_epoch, np.iinfo(np.int64).max).flat_map(epoch_indices)
  rows = rows or slice(0, batch_size)
  start, stop = rows.start or 0, batch_size if rows.stop is None else rows.stop

  def make_batch(step, idx):
    batch = tf.gather(images, idx[start:stop])
    if batch.dtype == tf.uint8:
      batch = tf.cast(batch, tf.float32) / 255.0
    if binarize_batches:  # The noise of the whole global batch, so any rows match the full batch's.
      shape = tf.concat([[batch_size], tf.shape(batch)[1:]], axis=0)
      noise = tf.random.stateless_uniform(shape, seed=tf.stack([seed_t, step]))[start:stop]
      batch = tf.cast(noise < batch, tf.float32)
    return batch

  seed_t = tf.constant(seed, tf.int64)
  ds = ds.skip(offset).enumerate(start=start_step)
  ds = ds.map(make_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  # No autotuning: deleting an iterator waits for the autotuner's thread to wake from its timed
  # wait, and a run deletes this one when it ends or is preempted (when exiting promptly matters).
  # A gather and a comparison per batch keep ahead of the step without it.
  options = tf.data.Options()
  options.autotune.enabled = False
  return ds.prefetch(prefetch).with_options(options).as_numpy_iterator()


def eval_batches(images: np.ndarray, batch_size: int, max_examples: Optional[int] = None,
                 seed: int = 0, rows: Optional[slice] = None
                 ) -> Tuple[np.ndarray, Iterator[Tuple[np.ndarray, np.ndarray]]]:
  """Fixed-size batches over a split, padded at the end: yields (batch, mask) with mask [batch_size].

  With `max_examples`, a random subset (seeded by `seed`) of that size, never the first rows: the test
  rows of static MNIST are ordered by difficulty. With `rows`, each batch holds only those rows of the
  global batch (this process's share); the mask is always the global one. Returns (indices, iterator).
  """
  n = images.shape[0]
  if max_examples is not None and max_examples > 0 and max_examples < n:
    indices = np.sort(np.random.default_rng(seed).choice(n, max_examples, replace=False))
  else:
    indices = np.arange(n)

  def gen():
    for start in range(0, len(indices), batch_size):
      idx = indices[start:start + batch_size]
      mask = np.zeros(batch_size, bool)
      mask[:len(idx)] = True
      idx = np.pad(idx, (0, batch_size - len(idx)), mode='edge')
      yield to_float(images[idx[rows] if rows is not None else idx]), mask

  return indices, gen()
