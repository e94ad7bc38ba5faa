r"""Seconds per epoch of the on-device training loop (`train.on_device`) for any experiment config.

  python -m benchmarks.epoch_time --config=experiments/configs/xu2019.py:table1,dense,rnvp_prior \
      --epochs=3 --config.model.flow_unroll=20

Times whole epochs (50,000 random binary 28x28 images, the config's batch size, optimizer and model)
after one warm-up epoch, which includes compilation; prints one JSON line. Planning for long
protocols: the paper's 2,400 epochs take 2,400 times the median. With --profile, one more epoch is
traced and its ops (on an accelerator, its kernels) are summed by name: where an epoch's time goes.
"""

import json
import time

from absl import app
from absl import flags
from ml_collections import config_flags
import numpy as np

_CONFIG = config_flags.DEFINE_config_file('config', None, 'An experiment config.')
_EPOCHS = flags.DEFINE_integer('epochs', 3, 'Timed epochs (after one warm-up epoch).')
_EXAMPLES = flags.DEFINE_integer('num_examples', 50000, 'Training-set size.')
_COMPARE_CHUNKS = flags.DEFINE_integer(
    'compare_chunk_steps', 0, 'Also time epochs run as the trainer runs them with '
    'train.device_chunk_steps=N (loops of N steps, at most two queued), alternating with whole-epoch '
    'loops in this process; adds their median and the ratio.')
_PROFILE = flags.DEFINE_bool('profile', False, 'Also trace one more epoch and add a summary of '
                             'its ops or kernels by total time (jax_workloads.profile_summary).')


def main(argv):
  del argv
  from benchmarks import jax_workloads as jw  # pylint: disable=g-import-not-at-top
  config = _CONFIG.value
  start = time.perf_counter()
  work = jw.DeviceLoopWorkload(config, num_examples=_EXAMPLES.value)  # A call is an epoch.
  first = time.perf_counter() - start
  chunk = _COMPARE_CHUNKS.value
  if chunk:
    work.run(1, chunk)  # Compiles the chunk lengths.
    times, chunked = jw.alternating_windows(_EPOCHS.value, lambda: work.run(1),
                                            lambda: work.run(1, chunk))
  else:
    times = jw.time_windows(lambda: work.run(1), _EPOCHS.value, warmup_windows=0)
  epoch = float(np.median(times))
  out = {'seconds_per_epoch': epoch, 'num_examples': _EXAMPLES.value, 'all': times,
         'compile_and_first_epoch_s': first, 'projected_2400_epochs_minutes': 2400 * epoch / 60,
         'steps_per_epoch': work.steps_per_call, 'model': config.model.to_dict()}
  if chunk:
    out.update(chunk_steps=chunk, seconds_per_epoch_chunked=float(np.median(chunked)),
               all_chunked=chunked, chunked_over_whole=float(np.median(chunked)) / epoch)
  if _PROFILE.value:
    out['profile'] = jw.profile_summary(lambda: work.run(1))
  print(json.dumps(out), flush=True)


if __name__ == '__main__':
  flags.mark_flags_as_required(['config'])
  app.run(main)
