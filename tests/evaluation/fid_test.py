"""FID's Inception network and its weights reader.

Without torch (CI): the reader refuses a file that would execute code, and a missing weights file
is named with its URL and how to pass it. With torch, torchvision and pytorch-fid installed
(`pip install -e '.[fidcheck]'`: CPU builds; see docs/dai2019.md), our features are checked against
pytorch-fid's InceptionV3 with shared random weights, read from a file `torch.save` wrote.
"""

import collections
import io
import os
import pickle
import struct
import sys
import types
import zipfile

import jax
import numpy as np
import pytest

from vaeprior_jax.evaluation.sample_quality import fid
import fid_reference


class _Evil:
  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return (os.system, (f'touch {self.marker}',))


def test_a_torch_file_that_would_run_code_is_refused_and_nothing_runs(tmp_path):
  marker = tmp_path / 'ran'
  path = str(tmp_path / 'evil.pth')
  with zipfile.ZipFile(path, 'w') as archive:
    archive.writestr('archive/data.pkl', pickle.dumps({'w': _Evil(marker)}, protocol=2))
  with pytest.raises(fid.UnsafeFileError, match='asks for (posix|os).system'):
    fid.read_torch_file(path)
  legacy = str(tmp_path / 'evil_legacy.pth')
  with open(legacy, 'wb') as f:
    f.write(pickle.dumps(_Evil(marker), protocol=2))
  with pytest.raises(fid.UnsafeFileError):
    fid.read_torch_file(legacy)
  assert not marker.exists()


class _Storage:
  """Stands for a torch storage of float32 values while a crafted file is pickled."""

  def __init__(self, key, numel):
    self.key, self.numel = key, numel


class _Tensor:
  """Pickles as torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...), as torch does."""

  def __init__(self, storage, offset, size, stride):
    self.args = (storage, offset, size, stride, False, collections.OrderedDict())

  def __reduce__(self):
    return (sys.modules['torch._utils']._rebuild_tensor_v2, self.args)


class _Pickler(pickle.Pickler):
  def persistent_id(self, obj):
    if isinstance(obj, _Storage):
      return ('storage', sys.modules['torch'].FloatStorage, obj.key, 'cpu', obj.numel)
    return None


def _crafted(path, tensors, values, legacy, numel_header=None):
  """Writes a torch file of {name: _Tensor} over one storage '0' holding float32 `values`, in the
  zip or legacy format, without torch: stand-in modules give pickle the globals torch's use."""
  torch = types.ModuleType('torch')
  utils = types.ModuleType('torch._utils')
  torch.FloatStorage = type('FloatStorage', (), {'__module__': 'torch'})
  def rebuild(*args):
    return args
  rebuild.__module__, rebuild.__qualname__ = 'torch._utils', '_rebuild_tensor_v2'
  utils._rebuild_tensor_v2 = rebuild
  saved = {k: sys.modules.get(k) for k in ('torch', 'torch._utils')}
  sys.modules.update({'torch': torch, 'torch._utils': utils})
  try:
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=2).dump(collections.OrderedDict(tensors))
  finally:
    for k, v in saved.items():
      if v is None:
        sys.modules.pop(k)
      else:
        sys.modules[k] = v
  raw = np.asarray(values, '<f4').tobytes()
  if legacy:
    with open(path, 'wb') as f:
      for header in (fid._LEGACY_MAGIC, 1001, {}):
        pickle.dump(header, f, protocol=2)
      f.write(buffer.getvalue())
      pickle.dump(['0'], f, protocol=2)
      f.write(struct.pack('<q', len(values) if numel_header is None else numel_header) + raw)
  else:
    with zipfile.ZipFile(path, 'w') as archive:
      archive.writestr('archive/data.pkl', buffer.getvalue())
      archive.writestr('archive/byteorder', 'little')
      archive.writestr('archive/data/0', raw)


@pytest.mark.parametrize('legacy', [False, True])
def test_crafted_tensor_views_outside_their_storage_are_refused(tmp_path, legacy):
  """A file that passes the globals check but claims a view beyond its storage's bytes (which
  `as_strided` would read from the heap, or crash on) is refused with one line; a good one reads."""
  values = [1.0, 2.0, 3.0, 4.0]
  path = str(tmp_path / 'w.pth')
  good = {'w': _Tensor(_Storage('0', 4), 1, (3,), (1,)), 'm': _Tensor(_Storage('0', 4), 0, (2, 2), (1, 2))}
  _crafted(path, good, values, legacy)
  state = fid.read_torch_file(path)
  np.testing.assert_array_equal(state['w'], [2.0, 3.0, 4.0])
  np.testing.assert_array_equal(state['m'], [[1.0, 3.0], [2.0, 4.0]])
  bad_views = [
      ((0, (64,), (1,)), 'reads outside its storage'),           # 64 elements on a 4-float storage
      ((0, (1 << 26,), (1,)), 'reads outside its storage'),      # (the segfault before)
      ((3, (2,), (1,)), 'reads outside its storage'),            # runs off the end from an offset
      ((0, (2, 2), (1, 3)), 'reads outside its storage'),        # a stride past the end
      ((0, (1 << 20, 4), (0, 1)), 'reads outside its storage'),  # more elements than the storage
      ((-1, (2,), (1,)), 'invalid view'),
      ((0, (2,), (-1,)), 'invalid view'),
      ((0, (2, 2), (1,)), 'invalid view'),
      ((0.5, (2,), (1,)), 'invalid view'),
  ]
  for (offset, size, stride), message in bad_views:
    _crafted(path, {'w': _Tensor(_Storage('0', 4), offset, size, stride)}, values, legacy)
    with pytest.raises(fid.UnsafeFileError, match=message):
      fid.read_torch_file(path)
  # A storage that declares more elements than the file holds.
  _crafted(path, {'w': _Tensor(_Storage('0', 64), 0, (64,), (1,))}, values, legacy,
           numel_header=64)
  with pytest.raises(fid.UnsafeFileError, match='declares 64 elements'):
    fid.read_torch_file(path)
  _crafted(path, {'w': _Tensor(_Storage('0', 1 << 40), 0, (4,), (1,))}, values, legacy)
  with pytest.raises(fid.UnsafeFileError, match='more than 2147483648 bytes'):
    fid.read_torch_file(path)


def test_missing_weights_name_the_file_its_url_and_how_to_pass_it(tmp_path, monkeypatch):
  monkeypatch.delenv(fid.WEIGHTS_ENV, raising=False)
  with pytest.raises(FileNotFoundError, match=fid.FID_WEIGHTS_NAME) as error:
    fid.load_params()
  assert fid.FID_WEIGHTS_URL in str(error.value) and fid.WEIGHTS_ENV in str(error.value)
  assert '--fid_weights' in str(error.value)
  with pytest.raises(FileNotFoundError, match='does not exist'):
    fid.load_params(str(tmp_path / 'nowhere.pth'))


def test_features_match_pytorch_fid_with_shared_random_weights(tmp_path):
  if not fid_reference.available():
    pytest.skip('torch, torchvision and pytorch-fid are not installed (the fidcheck extra).')
  torch, _ = fid_reference.import_pytorch_fid()
  model, state, path = fid_reference.random_weights_file(str(tmp_path))
  legacy = str(tmp_path / 'random_legacy.pth')
  torch.save(state, legacy, _use_new_zipfile_serialization=False)

  read, read_legacy = fid.read_torch_file(path), fid.read_torch_file(legacy)
  assert set(read) == set(read_legacy) == set(state)
  for key, value in state.items():
    np.testing.assert_array_equal(read[key], value.numpy())
    np.testing.assert_array_equal(read_legacy[key], value.numpy())

  params = fid.load_params(path, check_hash=False)
  cached = fid.load_params(path, check_hash=False)  # From the .npz now.
  assert any(name.endswith('.npz') for name in os.listdir(tmp_path))
  assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(params),
                                                  jax.tree.leaves(cached)))
  rng = np.random.default_rng(0)
  features = fid.features_fn(batch_size=3)
  for shape in ((3, 28, 28, 1), (2, 32, 32, 3)):
    images = rng.uniform(size=shape).astype(np.float32)
    rgb = np.repeat(images, 3 // shape[-1], axis=-1)
    with torch.no_grad():
      nchw = torch.from_numpy(rgb.transpose(0, 3, 1, 2))
      expected = model(nchw)[0].reshape(shape[0], -1).numpy()
      resized = torch.nn.functional.interpolate(nchw, size=(299, 299), mode='bilinear',
                                                align_corners=False).numpy()
    np.testing.assert_allclose(np.asarray(fid.resize_bilinear(rgb)),
                               resized.transpose(0, 2, 3, 1), atol=1e-5)
    ours = features(params, images)
    assert ours.shape == (shape[0], 2048)
    # The features differ between images well beyond the tolerance below.
    assert np.abs(expected - expected.mean(0)).mean() > 0.01 * np.abs(expected).mean()
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())
