"""The Fréchet distance against its closed form, against scipy's matrix square root (pytorch-fid's
way), and its statistics against numpy's."""

import numpy as np
import pytest
import scipy.linalg

from vaeprior_jax.evaluation.sample_quality import frechet


def _random_covariance(rng, d):
  a = rng.normal(size=(d, 2 * d))
  return a @ a.T / (2 * d) + 0.1 * np.eye(d)


def test_diagonal_covariances_give_the_closed_form():
  """For commuting (diagonal) covariances, d^2 = |mu1 - mu2|^2 + sum (s1_i - s2_i)^2, s the stds."""
  rng = np.random.default_rng(0)
  mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
  s1, s2 = rng.uniform(0.2, 2.0, 5), rng.uniform(0.2, 2.0, 5)
  expected = np.sum((mu1 - mu2) ** 2) + np.sum((s1 - s2) ** 2)
  got = frechet.frechet_distance(mu1, np.diag(s1 ** 2), mu2, np.diag(s2 ** 2))
  np.testing.assert_allclose(got, expected, rtol=1e-12)
  assert frechet.frechet_distance(mu1, np.diag(s1 ** 2), mu1, np.diag(s1 ** 2)) == pytest.approx(
      0.0, abs=1e-12)


@pytest.mark.parametrize('d', [3, 64])
def test_full_covariances_match_scipys_sqrtm(d):
  rng = np.random.default_rng(d)
  mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
  s1, s2 = _random_covariance(rng, d), _random_covariance(rng, d)
  covmean = scipy.linalg.sqrtm(s1 @ s2).real
  reference = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)
  np.testing.assert_allclose(frechet.frechet_distance(mu1, s1, mu2, s2), reference, rtol=1e-9)


def test_statistics_are_numpys_and_the_distance_of_features_uses_them():
  rng = np.random.default_rng(1)
  a = rng.normal(size=(500, 4)).astype(np.float32)
  b = (rng.normal(size=(300, 4)) * 2 + 1).astype(np.float32)
  mu, sigma = frechet.gaussian_statistics(a)
  assert mu.dtype == sigma.dtype == np.float64
  np.testing.assert_allclose(mu, a.astype(np.float64).mean(0), rtol=1e-12)
  np.testing.assert_allclose(sigma, np.cov(a.astype(np.float64), rowvar=False), rtol=1e-12)
  np.testing.assert_allclose(
      frechet.frechet_distance_of_features(a, b),
      frechet.frechet_distance(*frechet.gaussian_statistics(a), *frechet.gaussian_statistics(b)))
  with pytest.raises(ValueError, match=r'\[N >= 2, d\], got \(1, 4\)'):
    frechet.gaussian_statistics(a[:1])
  with pytest.raises(ValueError, match='means \\[d\\] and covariances'):
    frechet.frechet_distance(mu, sigma, mu[:3], sigma)


def test_the_bootstrap_sd_matches_the_spread_over_independent_sample_sets():
  """The spread a distance really has from one draw of N images to the next (1,000 independent
  draws of 300 Gaussian 'features' against a fixed reference) against the bootstrap estimate from
  a single draw: within 25% for the median of 8 draws (it is within ~10% here)."""
  rng = np.random.default_rng(0)
  d, n = 6, 300
  cov_generated, cov_reference = _random_covariance(rng, d), _random_covariance(rng, d)
  mean_generated, mean_reference = 0.5 * rng.normal(size=d), np.zeros(d)
  draw = lambda: rng.multivariate_normal(mean_generated, cov_generated, n)
  true_sd = np.std([frechet.frechet_distance(mean_reference, cov_reference,
                                             *frechet.gaussian_statistics(draw()))
                    for _ in range(1000)], ddof=1)
  estimates = [frechet.bootstrap_sd(draw(), mean_reference, cov_reference, 200, seed=i)
               for i in range(8)]
  assert 0.8 < np.median(estimates) / true_sd < 1.25
  with pytest.raises(ValueError, match='num_resamples >= 2, got 1'):
    frechet.bootstrap_sd(draw(), mean_reference, cov_reference, 1)
