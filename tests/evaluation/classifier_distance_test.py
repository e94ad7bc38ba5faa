"""The classifier Fréchet distance (CFD): its classifier learns and the distance is the Fréchet
distance of its features. report.sample_quality on a two-stage run (the classifier kept and reused
per folder, never called FID): two_stage_test."""


import numpy as np
import pytest

from vaeprior_jax.evaluation.sample_quality import classifier_distance
from vaeprior_jax.evaluation.sample_quality import frechet


def _two_classes(n, rng):
  """Images whose class is which half (top or bottom) is bright, with noise."""
  labels = rng.integers(0, 2, n)
  images = rng.uniform(0, 0.3, (n, 28, 28, 1))
  for i, y in enumerate(labels):
    images[i, 14 * y:14 * (y + 1)] += 0.7
  return images.astype(np.float32), labels.astype(np.int32)


def test_the_classifier_learns_and_its_distance_is_a_frechet_distance_of_its_features():
  rng = np.random.default_rng(0)
  images, labels = _two_classes(512, rng)
  params = classifier_distance.train(images, labels, 2, steps=60, batch_size=64)
  test_images, test_labels = _two_classes(256, rng)
  assert classifier_distance.accuracy(params, 2, test_images, test_labels) > 0.95
  a, b = test_images[:128], test_images[128:]
  features = lambda x: classifier_distance.features(params, 2, x)
  expected = frechet.frechet_distance(*frechet.gaussian_statistics(features(a)),
                                      *frechet.gaussian_statistics(features(b)))
  assert classifier_distance.distance(params, 2, a, b) == pytest.approx(expected, rel=1e-12)
  # One class only is further from the mixture than another draw of the mixture.
  one_class = test_images[test_labels == 0][:100]
  assert classifier_distance.distance(params, 2, one_class, b) > 3 * expected
