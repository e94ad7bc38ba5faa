"""Omniglot as 28x28 grey-level images, the preprocessing of Burda et al. (2016) that the papers use.

tfds' own `omniglot` is another dataset for this purpose: 105x105 binary strokes with the background /
evaluation split of Lake et al. The VAE papers (IWAE, VampPrior, Xu et al.) use Burda's `chardata.mat`
instead: 24,345 training and 8,070 test characters, downsampled to 28x28 grey levels in [0, 1].

The file cannot be downloaded by tfds: put it in a folder and pass that folder as the manual_dir; its
layout is described in `chardata`.
"""

import os

import numpy as np
import tensorflow_datasets as tfds

from vaeprior_jax.data.tfds_builders import chardata


class BurdaOmniglot(tfds.core.GeneratorBasedBuilder):
  """Burda et al.'s 28x28 Omniglot (24,345 train / 8,070 test), read from a manual_dir."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Burda et al. (2016) chardata.mat, grey levels in [0, 1].'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      f'Download {chardata.URL} and put {chardata.FILENAME} in the manual_dir ({chardata.LAYOUT}).')
  # Small test files may hold fewer images; the real file must hold exactly these.
  EXPECTED_SIZES = {'train': chardata.NUM_TRAIN, 'test': chardata.NUM_TEST}

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Tensor(shape=(28, 28, 1), dtype=np.float32),
            'alphabet': tfds.features.ClassLabel(num_classes=chardata.NUM_ALPHABETS),
            'character': np.int64,
        }),
        supervised_keys=None,
        homepage='https://github.com/yburda/iwae',
    )

  def _split_generators(self, dl_manager):
    path = os.path.join(dl_manager.manual_dir, chardata.FILENAME)
    splits = chardata.read_chardata(path, self.EXPECTED_SIZES)
    return {name: self._generate_examples(arrays) for name, arrays in splits.items()}

  def _generate_examples(self, arrays):
    images, alphabets, characters = arrays
    for i in range(len(images)):
      yield i, {'image': images[i], 'alphabet': int(alphabets[i]), 'character': int(characters[i])}
