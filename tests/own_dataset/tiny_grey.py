"""A user's own tfds dataset, outside the package (tests/data/arrays_test.py and the binaries, via
--import=tests.own_dataset.tiny_grey): 8x8 grey-level images read offline from tiny_grey.npz
(x_train, x_test uint8) in the manual_dir, registered with the library as `tiny_grey`."""

import os

import numpy as np
import tensorflow_datasets as tfds

from vaeprior_jax import data

FILENAME = 'tiny_grey.npz'


class TinyGrey(tfds.core.GeneratorBasedBuilder):
  """8x8 grey levels, from the manual_dir's tiny_grey.npz."""

  VERSION = tfds.core.Version('1.0.0')
  MANUAL_DOWNLOAD_INSTRUCTIONS = f'Put {FILENAME} in the manual_dir.'

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({'image': tfds.features.Image(shape=(8, 8, 1))}))

  def _split_generators(self, dl_manager):
    with np.load(os.path.join(dl_manager.manual_dir, FILENAME), allow_pickle=False) as f:
      splits = {'train': f['x_train'], 'test': f['x_test']}
    return {name: self._generate_examples(images) for name, images in splits.items()}

  def _generate_examples(self, images):
    for i, image in enumerate(images):
      yield i, {'image': image}


data.register_dataset('tiny_grey', data.DatasetSpec(
    f'{FILENAME}: x_train and x_test, uint8 [N, 8, 8, 1]', dynamic=True, carve_validation=True,
    validation_size=8, files=((FILENAME, ''),)), replace=True)


def write_files(folder: str, num_train: int = 48, num_test: int = 16, seed: int = 0) -> str:
  """Writes a manual_dir for the dataset into `folder`; returns it."""
  rng = np.random.default_rng(seed)
  os.makedirs(folder, exist_ok=True)
  np.savez(os.path.join(folder, FILENAME),
           x_train=rng.integers(0, 256, (num_train, 8, 8, 1), dtype=np.uint8),
           x_test=rng.integers(0, 256, (num_test, 8, 8, 1), dtype=np.uint8))
  return folder
