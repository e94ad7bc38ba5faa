"""FID's Inception network and its weights reader.

Without torch (CI): the reader refuses a file that would execute code, and a missing weights file
is named with its URL and how to pass it. With torch, torchvision and pytorch-fid installed
(`pip install -e '.[fidcheck]'`: CPU builds; see docs/dai2019.md), our features are checked against
pytorch-fid's InceptionV3 with shared random weights, read from a file `torch.save` wrote.
"""

import importlib.metadata
import importlib.util
import os
import pickle
import sys
import types
import zipfile

import jax
import numpy as np
import pytest

from vaeprior_jax import fid


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


def _import_pytorch_fid():
  """pytorch_fid's inception module, or a skip. torchvision is imported without its compiled
  operators (not needed by the Inception layers; a CPU build of them is not on PyPI)."""
  torch = pytest.importorskip('torch')
  if importlib.util.find_spec('pytorch_fid') is None or importlib.util.find_spec(
      'torchvision') is None:
    pytest.skip('pytorch-fid and torchvision are not installed (the fidcheck extra).')
  if 'torchvision' not in sys.modules:
    spec = importlib.util.find_spec('torchvision')
    package = types.ModuleType('torchvision')
    package.__path__, package.__spec__ = list(spec.submodule_search_locations), spec
    package.__version__ = importlib.metadata.version('torchvision')
    sys.modules['torchvision'] = package
  from pytorch_fid import inception  # pylint: disable=g-import-not-at-top
  return torch, inception


def test_features_match_pytorch_fid_with_shared_random_weights(tmp_path, monkeypatch):
  torch, inception = _import_pytorch_fid()
  torch.manual_seed(0)
  # pytorch-fid's FID network, as its fid_inception_v3 builds it, with random weights and batch
  # norm statistics.
  reference = inception._inception_v3(num_classes=1008, aux_logits=False, weights=None)
  for name, block, arg in (('Mixed_5b', inception.FIDInceptionA, (192, 32)),
                           ('Mixed_5c', inception.FIDInceptionA, (256, 64)),
                           ('Mixed_5d', inception.FIDInceptionA, (288, 64)),
                           ('Mixed_6b', inception.FIDInceptionC, (768, 128)),
                           ('Mixed_6c', inception.FIDInceptionC, (768, 160)),
                           ('Mixed_6d', inception.FIDInceptionC, (768, 160)),
                           ('Mixed_6e', inception.FIDInceptionC, (768, 192)),
                           ('Mixed_7b', inception.FIDInceptionE_1, (1280,)),
                           ('Mixed_7c', inception.FIDInceptionE_2, (2048,))):
    setattr(reference, name, block(*arg))
  # Random affine batch norm parameters, and running statistics measured on random images (so that
  # every layer normalises and the features depend on the input, as with trained weights).
  for module in reference.modules():
    if isinstance(module, torch.nn.BatchNorm2d):
      module.weight.data.uniform_(0.5, 1.5)
      module.bias.data.normal_(0.0, 0.1)
      module.reset_running_stats()
      module.momentum = None  # Cumulative averages.
  reference.train()
  with torch.no_grad():
    reference(torch.rand(8, 3, 299, 299))
  state = reference.state_dict()
  path, legacy = str(tmp_path / 'random.pth'), str(tmp_path / 'random_legacy.pth')
  torch.save(state, path)
  torch.save(state, legacy, _use_new_zipfile_serialization=False)
  monkeypatch.setattr(inception, 'load_state_dict_from_url',
                      lambda *a, **k: torch.load(path, weights_only=True))
  model = inception.InceptionV3([3]).eval()

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
