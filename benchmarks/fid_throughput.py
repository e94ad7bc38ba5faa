r"""FID feature throughput: our jitted Flax Inception (`vaeprior_jax.fid`) against pytorch-fid's
InceptionV3 on the same images, in one process, alternating windows; images/s (median over windows,
after one warm-up batch each), and the largest feature difference as a check.

  python -m benchmarks.fid_throughput --images=200 --batch_size=50 --windows=3
  python -m benchmarks.fid_throughput --images=10000 --batch_size=200 --windows=3   # on a GPU

(benchmarks/device_check.sh runs the GPU line as its step `fid`.)

Both networks get the same random weights (pytorch-fid's architecture with random parameters and
batch-norm statistics measured on random images, saved with torch.save and read by our loader), so
no weights file is needed. Needs the fidcheck extra (torch, torchvision, pytorch-fid); torchvision
is imported without its compiled operators, as in tests/fid_test.py. Images are 28x28 grey (MNIST's
shape) unless --shape says otherwise; both resize them to 299x299 inside the timed call.
"""

import json
import os
import statistics
import tempfile
import time

from absl import app
from absl import flags
import jax
import numpy as np

from vaeprior_jax import fid

_IMAGES = flags.DEFINE_integer('images', 200, 'Images per window.')
_BATCH = flags.DEFINE_integer('batch_size', 50, 'Images per compiled call / torch forward.')
_WINDOWS = flags.DEFINE_integer('windows', 3, 'Timed windows per implementation (alternating).')
_SHAPE = flags.DEFINE_list('shape', ['28', '28', '1'], 'H,W,C of the images.')
_THREADS = flags.DEFINE_integer('torch_threads', 0, 'torch.set_num_threads (0: torch default).')


def _pytorch_fid():
  import importlib.metadata  # pylint: disable=g-import-not-at-top
  import importlib.util  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  import types  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  if 'torchvision' not in sys.modules:
    spec = importlib.util.find_spec('torchvision')
    package = types.ModuleType('torchvision')
    package.__path__, package.__spec__ = list(spec.submodule_search_locations), spec
    package.__version__ = importlib.metadata.version('torchvision')
    sys.modules['torchvision'] = package
  from pytorch_fid import inception  # pylint: disable=g-import-not-at-top
  return torch, inception


def _shared_weights(torch, inception, folder):
  """pytorch-fid's FID network with random weights, and the path of its torch.save file."""
  torch.manual_seed(0)
  net = inception._inception_v3(num_classes=1008, aux_logits=False, weights=None)  # pylint: disable=protected-access
  for name, block, arg in (('Mixed_5b', inception.FIDInceptionA, (192, 32)),
                           ('Mixed_5c', inception.FIDInceptionA, (256, 64)),
                           ('Mixed_5d', inception.FIDInceptionA, (288, 64)),
                           ('Mixed_6b', inception.FIDInceptionC, (768, 128)),
                           ('Mixed_6c', inception.FIDInceptionC, (768, 160)),
                           ('Mixed_6d', inception.FIDInceptionC, (768, 160)),
                           ('Mixed_6e', inception.FIDInceptionC, (768, 192)),
                           ('Mixed_7b', inception.FIDInceptionE_1, (1280,)),
                           ('Mixed_7c', inception.FIDInceptionE_2, (2048,))):
    setattr(net, name, block(*arg))
  for module in net.modules():
    if isinstance(module, torch.nn.BatchNorm2d):
      module.reset_running_stats()
      module.momentum = None
  net.train()
  with torch.no_grad():
    net(torch.rand(8, 3, 299, 299))
  path = os.path.join(folder, 'random.pth')
  torch.save(net.state_dict(), path)
  inception.load_state_dict_from_url = lambda *a, **k: torch.load(path, weights_only=True)
  return inception.InceptionV3([3]).eval(), path


def main(argv):
  del argv
  torch, inception = _pytorch_fid()
  if _THREADS.value:
    torch.set_num_threads(_THREADS.value)
  shape = tuple(int(s) for s in _SHAPE.value)
  images = np.random.default_rng(0).uniform(size=(_IMAGES.value,) + shape).astype(np.float32)
  with tempfile.TemporaryDirectory() as folder:
    reference, path = _shared_weights(torch, inception, folder)
    params = fid.load_params(path, check_hash=False, cache=False)
  ours = fid.features_fn(_BATCH.value)
  device = 'cuda' if torch.cuda.is_available() else 'cpu'
  reference = reference.to(device)

  def torch_features(x):
    out = []
    with torch.no_grad():
      for i in range(0, len(x), _BATCH.value):
        rgb = np.repeat(x[i:i + _BATCH.value], 3 // shape[-1], axis=-1).transpose(0, 3, 1, 2)
        out.append(reference(torch.from_numpy(rgb).to(device))[0].reshape(len(rgb), -1).cpu())
    return torch.cat(out).numpy()

  runs = {'jax': lambda: ours(params, images), 'pytorch_fid': lambda: torch_features(images)}
  for fn in runs.values():  # Warm-up: compiles (jax), allocates (both).
    fn()
  rates = {k: [] for k in runs}
  outputs = {}
  for _ in range(_WINDOWS.value):
    for name, fn in runs.items():
      start = time.perf_counter()
      outputs[name] = fn()
      rates[name].append(len(images) / (time.perf_counter() - start))
  scale = float(np.abs(outputs['pytorch_fid']).max())
  result = {
      'images': len(images), 'shape': shape, 'batch_size': _BATCH.value, 'windows': _WINDOWS.value,
      'jax_backend': jax.default_backend(), 'torch_device': device,
      'torch_threads': torch.get_num_threads(),
      'images_per_s': {k: statistics.median(v) for k, v in rates.items()},
      'all_windows': rates,
      'max_abs_feature_difference': float(np.abs(outputs['jax'] - outputs['pytorch_fid']).max()),
      'feature_scale': scale,
  }
  result['jax_over_pytorch_fid'] = (result['images_per_s']['jax']
                                    / result['images_per_s']['pytorch_fid'])
  print(json.dumps(result, indent=2))


if __name__ == '__main__':
  app.run(main)
