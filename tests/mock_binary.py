"""Runs an experiments binary on tfds mock data, e.g. `python tests/mock_binary.py experiments.train
--config=... --workdir=...`: a separate process for the kill-and-resume test."""

import os
import runpy
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import helpers  # pylint: disable=g-import-not-at-top

if __name__ == '__main__':
  module = sys.argv[1]
  sys.argv = [module] + sys.argv[2:]
  with helpers.mock_binarized_mnist(num_examples=int(os.environ.get('MOCK_NUM_EXAMPLES', '64'))):
    runpy.run_module(module, run_name='__main__', alter_sys=True)
