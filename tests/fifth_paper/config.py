"""The fifth paper's configs: `--config=tests/fifth_paper/config.py:BUDGET[,DATASET]`, budget
`quick` (the tests') or `table1`, dataset `binarized_mnist` (the default). Its entry's paper number
is reported beside the evaluation's, as for the library's papers."""

import ml_collections

from vaeprior_jax import config as config_lib

BUDGETS = ('quick', 'table1')
DATASETS = ('binarized_mnist',)
PAPER_NLL = {'binarized_mnist': 99.5}  # A made-up paper's Table 1.


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  tokens = config_lib.parse_tokens(arg, {'budget': BUDGETS, 'dataset': DATASETS}, 'fifth_paper')
  budget = tokens.get('budget', 'quick')
  dataset = tokens.get('dataset', 'binarized_mnist')
  config = config_lib.defaults()
  config.entry = arg or 'quick'
  config.paper_nll = PAPER_NLL[dataset]
  config.model.net = 'fifth_mlp'
  config.model.prior = 'fifth_scaled_normal'
  config.model.latent_dim = 4 if budget == 'quick' else 40
  config.data.dataset = dataset
  config.train.method = 'fifth_vae_then_prior'
  config.train.num_steps = 4 if budget == 'quick' else 100_000
  config.train.fifth_vae_steps = 2 if budget == 'quick' else 50_000  # Its method's own key.
  config.train.batch_size = 8 if budget == 'quick' else 100
  config.train.learning_rate = 1e-3
  config.train.checkpoint_every_steps = 2 if budget == 'quick' else 1000
  config.train.log_every_steps = 2 if budget == 'quick' else 500
  config.train.max_checkpoints_to_keep = 10
  config.eval.num_samples = 10 if budget == 'quick' else 1000
  config.eval.chunk_size = 5 if budget == 'quick' else 100
  config.eval.batch_size = 8 if budget == 'quick' else 100
  config.eval.active_units_samples = 10 if budget == 'quick' else 1000
  config.paper_setting = config_lib.paper_setting(config, (
      'model.net', 'model.prior', 'data.dataset', 'train.method'))
  return config
