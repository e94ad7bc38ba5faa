"""FID's Inception network in Flax, its weights read safely from pytorch-fid's file, and FID.

The network is the TensorFlow Inception-v3 of 2015-12-05 that FID is defined with, in the form
pytorch-fid ports it: torchvision's Inception-v3 layout (convolutions without bias, batch norm with
epsilon 1e-3, ReLU) with the FID blocks (average pools in the A, C and first E blocks exclude the
padding, the last E block max-pools), up to the 2048-d global average pool. Inputs are images in
[0, 1], [N, H, W, C] with C = 1 (repeated to 3 channels) or 3, resized bilinearly to 299 x 299
(half-pixel centres, no antialiasing: torch's `interpolate(..., align_corners=False)`) and scaled to
[-1, 1].

Weights: pytorch-fid's `pt_inception-2015-12-05-6726825d.pth` (FID_WEIGHTS_URL). These machines
cannot download it; give its path with `weights_path`, the `--fid_weights` flag of
`experiments.evaluate`, or the environment variable VAEPRIOR_FID_WEIGHTS. The file is checked by
the SHA-256 prefix in its name (as torch.hub checks it) and read **without unpickling arbitrary
objects**: `read_torch_file` accepts only the globals a saved state dict needs (an ordered dict,
tensor rebuilds, storage types) and builds NumPy arrays itself. The converted arrays are kept as an
`.npz` beside the cache so the file is read once.
"""

import collections
import functools
import io
import math
import os
import pickle
import struct
import zipfile
from typing import Dict, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vaeprior_jax import interrupts
from vaeprior_jax import data

Array = jax.Array

FID_WEIGHTS_NAME = 'pt_inception-2015-12-05-6726825d.pth'
FID_WEIGHTS_URL = ('https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/'
                   + FID_WEIGHTS_NAME)
FID_WEIGHTS_SHA256_PREFIX = '6726825d'
WEIGHTS_ENV = 'VAEPRIOR_FID_WEIGHTS'
FEATURE_DIM = 2048


# ------------------------------------------------------------------------------------ the network

class BasicConv(nn.Module):
  """Conv (no bias) -> batch norm (inference, epsilon 1e-3) -> ReLU, torchvision's BasicConv2d.
  Parameters: 'kernel' [kh, kw, C, F] and the batch norm's 'scale', 'bias', 'mean', 'var' [F]."""
  features: int
  kernel: Tuple[int, int] = (1, 1)
  stride: int = 1
  padding: Tuple[int, int] = (0, 0)

  @nn.compact
  def __call__(self, x: Array) -> Array:
    kernel = self.param('kernel', nn.initializers.lecun_normal(),
                        tuple(self.kernel) + (x.shape[-1], self.features))
    scale = self.param('scale', nn.initializers.ones, (self.features,))
    bias = self.param('bias', nn.initializers.zeros, (self.features,))
    mean = self.param('mean', nn.initializers.zeros, (self.features,))
    var = self.param('var', nn.initializers.ones, (self.features,))
    (ph, pw) = self.padding
    y = jax.lax.conv_general_dilated(x, kernel, (self.stride, self.stride), ((ph, ph), (pw, pw)),
                                     dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
                                     precision=jax.lax.Precision.HIGHEST)
    return nn.relu((y - mean) * (scale * jax.lax.rsqrt(var + 1e-3)) + bias)


def _avg_pool(x: Array) -> Array:
  """3x3 stride-1 average pool over the window's real pixels (TensorFlow's, not counting padding)."""
  return nn.avg_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)), count_include_pad=False)


def _max_pool(x: Array, stride: int = 1, pad: int = 1) -> Array:
  return nn.max_pool(x, (3, 3), (stride, stride), ((pad, pad), (pad, pad)))


class BlockA(nn.Module):
  pool_features: int

  @nn.compact
  def __call__(self, x):
    b1 = BasicConv(64, name='branch1x1')(x)
    b5 = BasicConv(48, name='branch5x5_1')(x)
    b5 = BasicConv(64, (5, 5), padding=(2, 2), name='branch5x5_2')(b5)
    b3 = BasicConv(64, name='branch3x3dbl_1')(x)
    b3 = BasicConv(96, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(b3)
    b3 = BasicConv(96, (3, 3), padding=(1, 1), name='branch3x3dbl_3')(b3)
    bp = BasicConv(self.pool_features, name='branch_pool')(_avg_pool(x))
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class BlockB(nn.Module):

  @nn.compact
  def __call__(self, x):
    b3 = BasicConv(384, (3, 3), stride=2, name='branch3x3')(x)
    bd = BasicConv(64, name='branch3x3dbl_1')(x)
    bd = BasicConv(96, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(bd)
    bd = BasicConv(96, (3, 3), stride=2, name='branch3x3dbl_3')(bd)
    return jnp.concatenate([b3, bd, _max_pool(x, 2, 0)], axis=-1)


class BlockC(nn.Module):
  channels_7x7: int

  @nn.compact
  def __call__(self, x):
    c = self.channels_7x7
    row, col = dict(kernel=(1, 7), padding=(0, 3)), dict(kernel=(7, 1), padding=(3, 0))
    b1 = BasicConv(192, name='branch1x1')(x)
    b7 = BasicConv(c, name='branch7x7_1')(x)
    b7 = BasicConv(c, **row, name='branch7x7_2')(b7)
    b7 = BasicConv(192, **col, name='branch7x7_3')(b7)
    bd = BasicConv(c, name='branch7x7dbl_1')(x)
    bd = BasicConv(c, **col, name='branch7x7dbl_2')(bd)
    bd = BasicConv(c, **row, name='branch7x7dbl_3')(bd)
    bd = BasicConv(c, **col, name='branch7x7dbl_4')(bd)
    bd = BasicConv(192, **row, name='branch7x7dbl_5')(bd)
    bp = BasicConv(192, name='branch_pool')(_avg_pool(x))
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class BlockD(nn.Module):

  @nn.compact
  def __call__(self, x):
    b3 = BasicConv(192, name='branch3x3_1')(x)
    b3 = BasicConv(320, (3, 3), stride=2, name='branch3x3_2')(b3)
    b7 = BasicConv(192, name='branch7x7x3_1')(x)
    b7 = BasicConv(192, (1, 7), padding=(0, 3), name='branch7x7x3_2')(b7)
    b7 = BasicConv(192, (7, 1), padding=(3, 0), name='branch7x7x3_3')(b7)
    b7 = BasicConv(192, (3, 3), stride=2, name='branch7x7x3_4')(b7)
    return jnp.concatenate([b3, b7, _max_pool(x, 2, 0)], axis=-1)


class BlockE(nn.Module):
  pool: str  # 'avg' (Mixed_7b) or 'max' (Mixed_7c, FID's Inception)

  @nn.compact
  def __call__(self, x):
    row, col = dict(kernel=(1, 3), padding=(0, 1)), dict(kernel=(3, 1), padding=(1, 0))
    b1 = BasicConv(320, name='branch1x1')(x)
    b3 = BasicConv(384, name='branch3x3_1')(x)
    b3 = jnp.concatenate([BasicConv(384, **row, name='branch3x3_2a')(b3),
                          BasicConv(384, **col, name='branch3x3_2b')(b3)], axis=-1)
    bd = BasicConv(448, name='branch3x3dbl_1')(x)
    bd = BasicConv(384, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(bd)
    bd = jnp.concatenate([BasicConv(384, **row, name='branch3x3dbl_3a')(bd),
                          BasicConv(384, **col, name='branch3x3dbl_3b')(bd)], axis=-1)
    pooled = _avg_pool(x) if self.pool == 'avg' else _max_pool(x)
    bp = BasicConv(192, name='branch_pool')(pooled)
    return jnp.concatenate([b1, b3, bd, bp], axis=-1)


def resize_bilinear(x: Array, size: int = 299) -> Array:
  """[N, H, W, C] -> [N, size, size, C], bilinear with half-pixel centres and no antialiasing (torch's
  `interpolate(mode='bilinear', align_corners=False)`)."""
  n, h, w, c = x.shape
  scale = jnp.array([size / h, size / w], jnp.float32)
  return jax.image.scale_and_translate(x, (n, size, size, c), (1, 2), scale,
                                       jnp.zeros(2, jnp.float32), 'linear', antialias=False,
                                       precision=jax.lax.Precision.HIGHEST)


class InceptionV3(nn.Module):
  """FID's Inception-v3: images [N, H, W, 1 or 3] in [0, 1] -> pool features [N, 2048]."""

  @nn.compact
  def __call__(self, images: Array) -> Array:
    x = jnp.asarray(images, jnp.float32)
    if x.shape[-1] == 1:
      x = jnp.repeat(x, 3, axis=-1)
    if x.ndim != 4 or x.shape[-1] != 3:
      raise ValueError(f'FID needs images [N, H, W, 1 or 3], got {images.shape}.')
    x = 2.0 * resize_bilinear(x) - 1.0
    x = BasicConv(32, (3, 3), stride=2, name='Conv2d_1a_3x3')(x)
    x = BasicConv(32, (3, 3), name='Conv2d_2a_3x3')(x)
    x = BasicConv(64, (3, 3), padding=(1, 1), name='Conv2d_2b_3x3')(x)
    x = _max_pool(x, 2, 0)
    x = BasicConv(80, name='Conv2d_3b_1x1')(x)
    x = BasicConv(192, (3, 3), name='Conv2d_4a_3x3')(x)
    x = _max_pool(x, 2, 0)
    x = BlockA(32, name='Mixed_5b')(x)
    x = BlockA(64, name='Mixed_5c')(x)
    x = BlockA(64, name='Mixed_5d')(x)
    x = BlockB(name='Mixed_6a')(x)
    for name, c in (('Mixed_6b', 128), ('Mixed_6c', 160), ('Mixed_6d', 160), ('Mixed_6e', 192)):
      x = BlockC(c, name=name)(x)
    x = BlockD(name='Mixed_7a')(x)
    x = BlockE('avg', name='Mixed_7b')(x)
    x = BlockE('max', name='Mixed_7c')(x)
    return jnp.mean(x, axis=(1, 2))


# ------------------------------------------------------------------- reading torch files, safely

class UnsafeFileError(ValueError):
  """A torch file asked for something a state dict of tensors never needs."""


_STORAGE_DTYPES = {
    'FloatStorage': np.float32, 'DoubleStorage': np.float64, 'HalfStorage': np.float16,
    'LongStorage': np.int64, 'IntStorage': np.int32, 'ShortStorage': np.int16,
    'CharStorage': np.int8, 'ByteStorage': np.uint8, 'BoolStorage': np.bool_,
}


class _Storage:
  """A placeholder for one storage: its dtype and key; the bytes are attached after unpickling."""

  def __init__(self, dtype, key: str, numel: int):
    self.dtype, self.key, self.numel, self.array = np.dtype(dtype), key, numel, None


def _is_count(value) -> bool:
  """A non-negative Python int (not a bool): what sizes, strides and offsets must be."""
  return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class _TensorRef:
  """One tensor of the file: a view (offset, size, stride, in elements) of a storage."""

  def __init__(self, storage: _Storage, offset: int, size, stride):
    if not isinstance(storage, _Storage):
      raise UnsafeFileError(f'A tensor of the torch file has no storage ({type(storage).__name__}).')
    if not (isinstance(size, (tuple, list)) and isinstance(stride, (tuple, list))
            and len(size) == len(stride) and _is_count(offset)
            and all(map(_is_count, size)) and all(map(_is_count, stride))):
      raise UnsafeFileError(f'A tensor of the torch file has an invalid view: offset {offset!r}, '
                            f'size {size!r}, stride {stride!r} (non-negative ints, one stride per '
                            'dimension).')
    self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

  def to_numpy(self) -> np.ndarray:
    """The tensor's values, after checking that the view lies inside the storage's bytes: its last
    element, offset + sum((size - 1) * stride), within the storage, and no more elements than the
    storage holds (a state dict's tensors are dense)."""
    flat = self.storage.array
    numel = math.prod(self.size)
    if numel == 0:
      return np.zeros(self.size, flat.dtype)
    last = self.offset + sum((n - 1) * st for n, st in zip(self.size, self.stride))
    if last >= len(flat) or numel > len(flat):
      raise UnsafeFileError(
          f'A tensor of the torch file reads outside its storage: offset {self.offset}, size '
          f'{self.size}, stride {self.stride} need {max(last + 1, numel)} elements, the storage '
          f'holds {len(flat)}.')
    if not self.size:
      return flat[self.offset].copy()
    return np.lib.stride_tricks.as_strided(
        flat[self.offset:], self.size, tuple(s * flat.dtype.itemsize for s in self.stride)).copy()


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
  return _TensorRef(storage, storage_offset, size, stride)


def _attach(storage: _Storage, raw: bytes, dtype: np.dtype, where: str) -> None:
  """Sets the storage's values from its bytes, which must be exactly the elements it declared."""
  if len(raw) != storage.numel * dtype.itemsize:
    raise UnsafeFileError(f'{where}: storage {storage.key} declares {storage.numel} elements of '
                          f'{dtype.itemsize} bytes, the file holds {len(raw)} bytes.')
  storage.array = np.frombuffer(raw, dtype).astype(storage.dtype.newbyteorder('='))


def _rebuild_parameter(data, *unused):
  return data


class _StorageType:
  def __init__(self, name: str):
    self.name = name


# What the reader accepts of storages in all (pytorch-fid's Inception weights: 95 MB).
MAX_FILE_BYTES = 1 << 31


class _SafeUnpickler(pickle.Unpickler):
  """Builds a state dict of `_TensorRef`s; any global but the few a state dict needs is refused."""

  _ALLOWED = {
      ('collections', 'OrderedDict'): collections.OrderedDict,
      ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor,
      ('torch._utils', '_rebuild_tensor'): _rebuild_tensor,
      ('torch._utils', '_rebuild_parameter'): _rebuild_parameter,
  }

  def __init__(self, file, storages: Dict[str, _Storage]):
    super().__init__(file)
    self._storages = storages

  def find_class(self, module, name):
    if (module, name) in self._ALLOWED:
      return self._ALLOWED[(module, name)]
    if module == 'torch' and name in _STORAGE_DTYPES:
      return _StorageType(name)
    raise UnsafeFileError(f'The torch file asks for {module}.{name}; only state dicts of tensors '
                          'are read (nothing is executed).')

  def persistent_load(self, pid):
    if not (isinstance(pid, tuple) and pid and pid[0] == 'storage'):
      raise UnsafeFileError(f'Unknown persistent id {pid!r} in the torch file.')
    if len(pid) < 5:
      raise UnsafeFileError(f'Malformed storage reference {pid!r} in the torch file.')
    storage_type, key, _, numel = pid[1:5]
    if not isinstance(storage_type, _StorageType):
      raise UnsafeFileError(f'Unknown storage type {storage_type!r} in the torch file.')
    if not _is_count(numel):
      raise UnsafeFileError(f'Storage {key!r} of the torch file declares {numel!r} elements.')
    declared = sum(st.numel * st.dtype.itemsize for st in self._storages.values())
    if declared + numel * np.dtype(_STORAGE_DTYPES[storage_type.name]).itemsize > MAX_FILE_BYTES:
      raise UnsafeFileError(f'The torch file declares more than {MAX_FILE_BYTES} bytes of '
                            'storages; the FID weights hold about 95 MB.')
    key = str(key)
    if key not in self._storages:
      self._storages[key] = _Storage(_STORAGE_DTYPES[storage_type.name], key, int(numel))
    return self._storages[key]


def _read_zip(path: str) -> Dict[str, np.ndarray]:
  with zipfile.ZipFile(path) as archive:
    names = archive.namelist()
    pkl = [n for n in names if n.endswith('/data.pkl') or n == 'data.pkl']
    if len(pkl) != 1:
      raise ValueError(f'{path}: a torch zip file holds one data.pkl, found {len(pkl)}.')
    root = pkl[0][:-len('data.pkl')]
    storages: Dict[str, _Storage] = {}
    result = _SafeUnpickler(io.BytesIO(archive.read(pkl[0])), storages).load()
    order = archive.read(root + 'byteorder').decode() if root + 'byteorder' in names else 'little'
    for key, storage in storages.items():
      name = f'{root}data/{key}'
      if name not in names:
        raise UnsafeFileError(f'{path}: storage {key} has no data ({name}).')
      if archive.getinfo(name).file_size != storage.numel * storage.dtype.itemsize:
        raise UnsafeFileError(f'{path}: storage {key} declares {storage.numel} elements of '
                              f'{storage.dtype.itemsize} bytes, the file holds '
                              f'{archive.getinfo(name).file_size} bytes.')
      dtype = storage.dtype.newbyteorder('<' if order == 'little' else '>')
      _attach(storage, archive.read(name), dtype, path)
  return result


_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class _PlainUnpickler(pickle.Unpickler):
  """For the legacy format's header pickles (numbers, a dict of strings, a list of keys)."""

  def find_class(self, module, name):
    raise UnsafeFileError(f'The torch file header asks for {module}.{name}.')


def _read_legacy(path: str) -> Dict[str, np.ndarray]:
  with open(path, 'rb') as f:
    if _PlainUnpickler(f).load() != _LEGACY_MAGIC:
      raise ValueError(f'{path} is neither a torch zip file nor a legacy torch file.')
    _PlainUnpickler(f).load()  # Protocol version.
    _PlainUnpickler(f).load()  # System info.
    storages: Dict[str, _Storage] = {}
    result = _SafeUnpickler(f, storages).load()
    keys = _PlainUnpickler(f).load()
    if not isinstance(keys, list) or sorted(map(str, keys)) != sorted(storages):
      raise UnsafeFileError(f'{path}: the storage keys {keys!r} are not those the tensors use.')
    size = os.fstat(f.fileno()).st_size
    for key in keys:
      storage = storages[str(key)]
      header = f.read(8)
      if len(header) != 8:
        raise UnsafeFileError(f'{path}: the file ends before storage {key}.')
      (numel,) = struct.unpack('<q', header)
      if numel != storage.numel or numel * storage.dtype.itemsize > size - f.tell():
        raise UnsafeFileError(f'{path}: storage {key} declares {storage.numel} elements, its header '
                              f'{numel}, and {size - f.tell()} bytes are left in the file.')
      _attach(storage, f.read(numel * storage.dtype.itemsize), storage.dtype.newbyteorder('<'),
              path)
    for storage in storages.values():
      if storage.array is None:
        raise UnsafeFileError(f'{path}: storage {storage.key} has no data.')
  return result


def read_torch_file(path: str) -> Dict[str, np.ndarray]:
  """A state dict saved by `torch.save` (zip or legacy format) as {name: np.ndarray}, without
  unpickling anything but an ordered dict of tensors (`UnsafeFileError` otherwise)."""
  result = _read_zip(path) if zipfile.is_zipfile(path) else _read_legacy(path)
  if not isinstance(result, dict):
    raise UnsafeFileError(f'{path} holds a {type(result).__name__}, not a state dict.')
  return {str(k): v.to_numpy() for k, v in result.items() if isinstance(v, _TensorRef)}


# --------------------------------------------------------------------------------- the weights

def params_from_state_dict(state: Dict[str, np.ndarray]):
  """pytorch-fid's state dict (torchvision names) -> this `InceptionV3`'s parameters."""
  template = jax.eval_shape(InceptionV3().init, jax.random.key(0),
                            jax.ShapeDtypeStruct((1, 299, 299, 3), jnp.float32))['params']
  torch_names = {'kernel': 'conv.weight', 'scale': 'bn.weight', 'bias': 'bn.bias',
                 'mean': 'bn.running_mean', 'var': 'bn.running_var'}

  def convert(path, leaf):
    names = [p.key for p in path]
    key = '.'.join(names[:-1] + [torch_names[names[-1]]])
    if key not in state:
      raise ValueError(f'The FID weights have no {key!r}: not pytorch-fid\'s Inception file.')
    value = np.asarray(state[key], np.float32)
    if names[-1] == 'kernel':
      value = value.transpose(2, 3, 1, 0)  # [F, C, kh, kw] -> [kh, kw, C, F]
    if value.shape != leaf.shape:
      raise ValueError(f'FID weights: {key} has shape {value.shape}, expected {leaf.shape}.')
    return value

  return jax.tree_util.tree_map_with_path(convert, template)


def weights_path(path: Optional[str] = None) -> str:
  """The FID weights file: `path`, else $VAEPRIOR_FID_WEIGHTS; a clear error when neither exists."""
  path = path or os.environ.get(WEIGHTS_ENV, '')
  if not path or not os.path.isfile(path):
    where = f' ({path!r} does not exist)' if path else ''
    raise FileNotFoundError(
        f'FID needs pytorch-fid\'s Inception weights {FID_WEIGHTS_NAME}{where}: download '
        f'{FID_WEIGHTS_URL} and pass its path with --fid_weights or ${WEIGHTS_ENV}.')
  return path


def checked_weights(path: Optional[str] = None, check_hash: bool = True) -> Tuple[str, str]:
  """(the weights file's path (see `weights_path`), its SHA-256), after checking the hash's prefix
  (unless check_hash is off): the errors of `load_params`, without reading the tensors."""
  path = weights_path(path)
  digest = data.file_sha256(path)
  if check_hash and not digest.startswith(FID_WEIGHTS_SHA256_PREFIX):
    raise ValueError(f'{path}: SHA-256 {digest[:16]}... does not start with '
                     f'{FID_WEIGHTS_SHA256_PREFIX}; not pytorch-fid\'s {FID_WEIGHTS_NAME}.')
  return path, digest


def load_params(path: Optional[str] = None, check_hash: bool = True, cache: bool = True):
  """The Inception parameters from pytorch-fid's weights file (see `weights_path`).

  check_hash: the file's SHA-256 must start with the 8 hex digits its standard name carries
    (6726825d), as torch.hub checks it; off only for test files with random weights.
  cache: keep the converted arrays as `<file>.npz` beside it (or under $XDG_CACHE_HOME when that
    folder is not writable) and read that on later calls, after checking it belongs to the same file.
  """
  path, digest = checked_weights(path, check_hash)
  from vaeprior_jax import checkpoints  # pylint: disable=g-import-not-at-top
  cache_path = _cache_path(path, digest) if cache else None
  if cache_path and os.path.exists(cache_path):
    return checkpoints.load_tree_npz(cache_path)
  params = params_from_state_dict(read_torch_file(path))
  if cache_path:
    checkpoints.save_tree_npz(cache_path, params)
  return jax.tree.map(jnp.asarray, params)


def _cache_path(path: str, digest: str) -> Optional[str]:
  folder = os.path.dirname(os.path.abspath(path))
  if not os.access(folder, os.W_OK):
    folder = os.path.join(os.environ.get('XDG_CACHE_HOME', os.path.expanduser('~/.cache')),
                          'vaeprior_jax')
    os.makedirs(folder, exist_ok=True)
  return os.path.join(folder, f'{os.path.basename(path)}.{digest[:16]}.npz')


@functools.lru_cache(maxsize=None)
def _jitted_apply():
  """The jitted network, one per process: every `features_fn` shares its compilations."""
  return jax.jit(InceptionV3().apply)


def features_fn(batch_size: int = 200):
  """(params, images [N, H, W, C], numpy: floats in [0, 1], or uint8 read as k / 255) -> pool
  features [N, 2048] (numpy, float64), computed in jitted batches of `batch_size` (the last one
  padded), or of N when N is smaller (a small set is not padded to a full batch; each such N
  compiles once). uint8 images are converted a batch at a time: a whole colour training split
  (CelebA's 162,770 images: 2 GB as uint8) never exists as floats (8 GB)."""
  apply = _jitted_apply()

  def features(params, images) -> np.ndarray:
    size = min(batch_size, len(images)) or 1
    out = []
    for start in interrupts.checked(range(0, len(images), size)):
      batch = data.to_float(images[start:start + size])
      pad = size - len(batch)
      if pad:
        batch = np.concatenate([batch, np.zeros((pad,) + batch.shape[1:], batch.dtype)])
      out.append(np.asarray(apply({'params': params}, batch), np.float64)[:size - pad])
    return np.concatenate(out) if out else np.zeros((0, FEATURE_DIM))

  return features

