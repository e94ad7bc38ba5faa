r"""Minor page faults and milliseconds per train step, and an in-process A/B of huge pages.

  python -m benchmarks.page_faults --net=resnet --prior=standard
  GLIBC_TUNABLES=glibc.malloc.hugetlb=1 python -m benchmarks.page_faults --toggle_thp

Runs the binaries' train step (`jax_workloads.TrainWorkload`, batch 128) in `--windows` timed windows
after a warm-up and prints one JSON line: the median milliseconds per step and the minor page faults
per step (`getrusage`). With --toggle_thp (Linux), windows alternate between transparent huge pages
disabled and allowed for this process (`prctl(PR_SET_THP_DISABLE)`), so that only the memory
faulted during the steps changes page size; start it with GLIBC_TUNABLES=glibc.malloc.hugetlb=1 where
THP is in madvise mode, or nothing is asked for huge pages. A/B of the tunable itself: alternate
processes started with and without it (benchmarks/LOG.md gives the loop).
"""

import ctypes
import json
import resource
import time

from absl import app
from absl import flags
import numpy as np

from vaeprior_jax.cpu import xla_options

_NET = flags.DEFINE_enum('net', 'resnet', ['dense', 'resnet'], 'Network.')
_PRIOR = flags.DEFINE_enum('prior', 'standard', ['standard', 'realnvp'], 'Prior.')
_WINDOWS = flags.DEFINE_integer('windows', 8, 'Timed windows (per setting with --toggle_thp).')
_TOGGLE = flags.DEFINE_bool('toggle_thp', False, 'Alternate windows with THP disabled / allowed.')

PR_SET_THP_DISABLE = 41


def _set_thp_disabled(disabled: bool):
  libc = ctypes.CDLL(None, use_errno=True)
  if libc.prctl(PR_SET_THP_DISABLE, int(disabled), 0, 0, 0) != 0:
    raise OSError(ctypes.get_errno(), 'prctl(PR_SET_THP_DISABLE) failed')


def main(argv):
  del argv
  from benchmarks import jax_workloads as jw  # pylint: disable=g-import-not-at-top
  work = jw.TrainWorkload(jw.config_for(_NET.value, _PRIOR.value))
  steps = jw.train_steps_per_window(_NET.value)
  work.run(2)
  settings = ('thp_disabled', 'thp_allowed') if _TOGGLE.value else ('as_started',)
  times = {s: [] for s in settings}
  faults = {s: [] for s in settings}
  for i in range(_WINDOWS.value):
    order = settings if i % 2 == 0 else settings[::-1]
    for setting in order:
      if _TOGGLE.value:
        _set_thp_disabled(setting == 'thp_disabled')
      before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
      start = time.perf_counter()
      work.run(steps)
      times[setting].append((time.perf_counter() - start) / steps)
      faults[setting].append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / steps)
  out = {'net': _NET.value, 'prior': _PRIOR.value, 'batch_size': work.batch_size,
         **xla_options.host_memory_settings()}
  for s in settings:
    out[s] = {'ms_per_step': 1e3 * float(np.median(times[s])),
              'faults_per_step': float(np.median(faults[s])),
              'windows_ms': [round(1e3 * t, 1) for t in times[s]]}
  print(json.dumps(out), flush=True)


if __name__ == '__main__':
  app.run(main)
