"""FID's Inception network and its weights reader.

Without torch (CI): the reader refuses a file that would execute code, and a missing weights file
is named with its URL and how to pass it. With torch, torchvision and pytorch-fid installed
(`pip install -e '.[fidcheck]'`: CPU builds; see docs/dai2019.md), our features are checked against
pytorch-fid's InceptionV3 with shared random weights, read from a file `torch.save` wrote.
"""

import os
import pickle
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
