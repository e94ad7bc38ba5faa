"""Evaluation: `estimators` (the importance-weighted log-likelihood and the split metrics), `report`
(a workdir's evaluation, as `experiments.evaluate` runs it), `analysis` (Xu et al.'s App. B
analyses), `images` (PNG grids) and `sample_quality` (Fréchet distances: FID and the classifier
distance). The two estimators most code needs are also here."""

from vaeprior_jax.evaluation import estimators
from vaeprior_jax.evaluation.estimators import importance_weighted_log_likelihood, log_likelihood_fn

__all__ = ['estimators', 'importance_weighted_log_likelihood', 'log_likelihood_fn']
