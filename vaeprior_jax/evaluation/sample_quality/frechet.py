"""The Fréchet distance between two Gaussians, fitted to two sets of features (FID's formula).

    d^2 = |mu_1 - mu_2|^2 + tr(S_1) + tr(S_2) - 2 tr((S_1 S_2)^(1/2))

Everything is float64, on the host (NumPy). tr((S_1 S_2)^(1/2)) is computed as the sum of the square
roots of the eigenvalues of the symmetric positive semi-definite matrix S_1^(1/2) S_2 S_1^(1/2)
(similar to S_1 S_2), which needs no general matrix square root and cannot come out complex; tiny
negative eigenvalues from rounding are clipped to 0. pytorch-fid computes the same quantity with
scipy.linalg.sqrtm of S_1 S_2; tests/evaluation/frechet_test.py checks the two agree, and both against the
closed form for diagonal covariances.

These are the statistics of FID (features of the Inception network) and of any stand-in feature
space (a name of its own there, never "FID").
"""

from typing import Tuple

import numpy as np


def gaussian_statistics(features) -> Tuple[np.ndarray, np.ndarray]:
  """(mean [d], covariance [d, d]) of features [N, d], in float64; the covariance is the unbiased one
  (N - 1 in the denominator), as numpy's `np.cov` and pytorch-fid."""
  features = np.asarray(features, np.float64)
  if features.ndim != 2 or features.shape[0] < 2:
    raise ValueError(f'gaussian_statistics needs features [N >= 2, d], got {features.shape}.')
  return features.mean(axis=0), np.cov(features, rowvar=False)


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
  values, vectors = np.linalg.eigh(s)
  return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
  """The squared Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) (FID's number)."""
  mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
  sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
  d = mu1.shape[-1]
  if mu1.shape != (d,) or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
    raise ValueError(f'frechet_distance needs means [d] and covariances [d, d] of one d; got '
                     f'{mu1.shape}, {sigma1.shape}, {mu2.shape}, {sigma2.shape}.')
  return _distance(mu1, sigma1, _psd_sqrt((sigma1 + sigma1.T) / 2), mu2, sigma2)


def _distance(mu1, sigma1, root1, mu2, sigma2) -> float:
  """`frechet_distance` given root1 = sigma1^(1/2)."""
  middle = root1 @ sigma2 @ root1
  eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2)
  trace_sqrt = np.sum(np.sqrt(np.clip(eigenvalues, 0.0, None)))
  diff = mu1 - mu2
  return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt)


def frechet_distance_of_features(features1, features2) -> float:
  """`frechet_distance` of the Gaussians fitted to features1 [N1, d] and features2 [N2, d]."""
  return frechet_distance(*gaussian_statistics(features1), *gaussian_statistics(features2))


def bootstrap_sd(features, reference_mean, reference_cov, num_resamples: int,
                 seed: int = 0) -> float:
  """The bootstrap estimate of the standard deviation of `frechet_distance` between the Gaussian
  fitted to features [N, d] and a fixed reference (mean [d], cov [d, d]): the sd over
  `num_resamples` (>= 2) sets of N rows drawn with replacement from `features`.

  It measures how much a distance moves with the draw of the N generated images (the reference's
  own sampling error is not in it: its statistics come from many more images), so two distances
  of independent sample sets that differ by less than a few of these are not told apart. The
  resampled distances are biased upwards (a resample repeats rows); their spread is what is used.
  Costs one d x d symmetric eigendecomposition per resample.
  """
  features = np.asarray(features, np.float64)
  if num_resamples < 2:
    raise ValueError(f'bootstrap_sd needs num_resamples >= 2, got {num_resamples}.')
  mu_ref = np.asarray(reference_mean, np.float64)
  cov_ref = np.asarray(reference_cov, np.float64)
  root_ref = _psd_sqrt((cov_ref + cov_ref.T) / 2)
  rng = np.random.default_rng(seed)
  distances = [_distance(mu_ref, cov_ref, root_ref,
                         *gaussian_statistics(features[rng.integers(0, len(features),
                                                                    len(features))]))
               for _ in range(num_resamples)]
  return float(np.std(distances, ddof=1))
