"""Runs an experiments binary on tfds mock data, e.g. `python tests/mock_binary.py experiments.train
--config=... --workdir=...`: a separate process for the kill-and-resume test. The mock images have
MOCK_NUM_EXAMPLES examples (64) with pixels drawn from 0 .. MOCK_MAX_VALUE - 1 (2: binary; 256: 8-bit
grey levels)."""

import os
import runpy
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import helpers  # pylint: disable=g-import-not-at-top

if __name__ == '__main__':
  module = sys.argv[1]
  sys.argv = [module] + sys.argv[2:]
  with helpers.mock_tfds(num_examples=int(os.environ.get('MOCK_NUM_EXAMPLES', '64')),
                         max_value=int(os.environ.get('MOCK_MAX_VALUE', '2'))):
    runpy.run_module(module, run_name='__main__', alter_sys=True)
