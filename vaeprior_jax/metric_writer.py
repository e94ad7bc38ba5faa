"""One writer for scalar metrics: TensorBoard event files and a JSON-lines file, from process 0 only."""

import json
import os
from typing import Mapping

import jax


def format_duration(seconds: float) -> str:
  """H:MM:SS, for progress lines."""
  seconds = int(max(seconds, 0))
  return f'{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}'


class MetricWriter:
  """Writes {name: float} per step to `workdir/metrics.jsonl` and `workdir/tensorboard/`."""

  def __init__(self, workdir: str, filename: str = 'metrics.jsonl', resume_from_step: int = 0):
    self._enabled = jax.process_index() == 0
    self._jsonl_path = os.path.join(workdir, filename)
    self._tb = None
    if not self._enabled:
      return
    if os.path.exists(self._jsonl_path):  # Drop lines a killed run wrote after its last checkpoint.
      with open(self._jsonl_path) as f:
        keep = [l for l in f if l.strip() and json.loads(l).get('step', 0) <= resume_from_step]
      with open(self._jsonl_path, 'w') as f:
        f.writelines(keep)
    from vaeprior_jax import data  # pylint: disable=g-import-not-at-top
    data.hide_accelerators_from_tf()
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    self._tb = tf.summary.create_file_writer(os.path.join(workdir, 'tensorboard'))

  def write_scalars(self, step: int, scalars: Mapping[str, float]):
    if not self._enabled:
      return
    scalars = {k: float(v) for k, v in scalars.items()}
    with open(self._jsonl_path, 'a') as f:
      f.write(json.dumps({'step': int(step), **scalars}) + '\n')
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    with self._tb.as_default():
      for name, value in scalars.items():
        tf.summary.scalar(name, value, step=int(step))
    self._tb.flush()

  def close(self):
    if self._tb is not None:
      self._tb.close()
