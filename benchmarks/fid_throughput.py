r"""FID feature throughput: our jitted Flax Inception (`vaeprior_jax.evaluation.sample_quality.fid`) against pytorch-fid's
InceptionV3 on the same images, in one process, alternating windows; images/s (median over windows,
after one warm-up batch each), and the largest feature difference as a check.

  python -m benchmarks.fid_throughput --images=200 --batch_size=50 --windows=3
  python -m benchmarks.fid_throughput --images=10000 --batch_size=200 --windows=3   # on a GPU

(benchmarks/device_check.sh runs the GPU line as its step `fid`.)

Both networks get the same random weights (pytorch-fid's architecture with random parameters and
batch-norm statistics measured on random images, saved with torch.save and read by our loader), so
no weights file is needed. Needs the fidcheck extra (torch, torchvision, pytorch-fid); torchvision
is imported without its compiled operators (`fid_reference`). Images are 28x28 grey (MNIST's
shape) unless --shape says otherwise; both resize them to 299x299 inside the timed call.
"""

import json
import statistics
import tempfile
import time

from absl import app
from absl import flags
import jax
import numpy as np

from vaeprior_jax.evaluation.sample_quality import fid
import fid_reference

_IMAGES = flags.DEFINE_integer('images', 200, 'Images per window.')
_BATCH = flags.DEFINE_integer('batch_size', 50, 'Images per compiled call / torch forward.')
_WINDOWS = flags.DEFINE_integer('windows', 3, 'Timed windows per implementation (alternating).')
_SHAPE = flags.DEFINE_list('shape', ['28', '28', '1'], 'H,W,C of the images.')
_THREADS = flags.DEFINE_integer('torch_threads', 0, 'torch.set_num_threads (0: torch default).')


def main(argv):
  del argv
  torch, _ = fid_reference.import_pytorch_fid()
  if _THREADS.value:
    torch.set_num_threads(_THREADS.value)
  shape = tuple(int(s) for s in _SHAPE.value)
  images = np.random.default_rng(0).uniform(size=(_IMAGES.value,) + shape).astype(np.float32)
  with tempfile.TemporaryDirectory() as folder:
    reference, _, path = fid_reference.random_weights_file(folder)
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
