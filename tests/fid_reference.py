"""pytorch-fid's own FID network with random weights: the independent reference that
`tests/evaluation/fid_test.py` and `benchmarks/fid_throughput.py` check `vaeprior_jax.evaluation.sample_quality.fid` against.

Needs the fidcheck extra (torch, torchvision, pytorch-fid); nothing else in the library imports it.
torchvision is imported without its package `__init__`, which loads compiled operators the Inception
layers do not use (on PyPI only a CUDA build of them exists, which fails to load beside CPU torch).
"""

import importlib.metadata
import importlib.util
import os
import sys
import types


def available() -> bool:
  """Whether torch, torchvision and pytorch-fid are installed."""
  return all(importlib.util.find_spec(m) is not None
             for m in ('torch', 'torchvision', 'pytorch_fid'))


def import_pytorch_fid():
  """(torch, pytorch_fid.inception)."""
  import torch  # pylint: disable=g-import-not-at-top
  if 'torchvision' not in sys.modules:
    spec = importlib.util.find_spec('torchvision')
    package = types.ModuleType('torchvision')
    package.__path__, package.__spec__ = list(spec.submodule_search_locations), spec
    package.__version__ = importlib.metadata.version('torchvision')
    sys.modules['torchvision'] = package
  from pytorch_fid import inception  # pylint: disable=g-import-not-at-top
  return torch, inception


def random_weights_file(folder: str, seed: int = 0):
  """Builds pytorch-fid's FID network as its `fid_inception_v3` does, with random weights, random
  affine batch-norm parameters and batch-norm statistics measured on random images (so that every
  layer normalises and the features depend on the input, as with trained weights); saves its state
  dict with torch.save as `folder`/random.pth and makes pytorch-fid load that file instead of
  downloading its weights. Returns (pytorch-fid's InceptionV3 in eval mode, the state dict, path)."""
  torch, inception = import_pytorch_fid()
  torch.manual_seed(seed)
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
      module.weight.data.uniform_(0.5, 1.5)
      module.bias.data.normal_(0.0, 0.1)
      module.reset_running_stats()
      module.momentum = None  # Cumulative averages.
  net.train()
  with torch.no_grad():
    net(torch.rand(8, 3, 299, 299))
  state = net.state_dict()
  path = os.path.join(folder, 'random.pth')
  torch.save(state, path)
  inception.load_state_dict_from_url = lambda *a, **k: torch.load(path, weights_only=True)
  return inception.InceptionV3([3]).eval(), state, path
