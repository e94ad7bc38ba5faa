"""One writer for scalar metrics: TensorBoard event files and a JSON-lines file, from process 0 only."""

import json
import os
import time
from typing import Mapping

from absl import logging
import jax

from vaeprior_jax import files


def format_duration(seconds: float) -> str:
  """H:MM:SS, for progress lines."""
  seconds = int(max(seconds, 0))
  return f'{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}'


class MetricWriter:
  """Writes {name: float} per step to `workdir/metrics.jsonl` and `workdir/tensorboard/`.

  The event files are written with TensorBoard's own writer (no TensorFlow needed), as scalar
  summaries that TensorBoard's scalar dashboard reads.
  """

  def __init__(self, workdir: str, filename: str = 'metrics.jsonl', resume_from_step: int = 0):
    self._enabled = jax.process_index() == 0
    self._jsonl_path = os.path.join(workdir, filename)
    self._tb = None
    if not self._enabled:
      return
    if os.path.exists(self._jsonl_path):  # Drop lines a killed run wrote after its last checkpoint.
      with open(self._jsonl_path) as f:
        lines = [l for l in f if l.strip()]
      keep = []
      for i, line in enumerate(lines):
        try:
          record = json.loads(line)
        except json.JSONDecodeError:
          if i == len(lines) - 1:  # A line torn by a crash or a full disk: dropped, said so.
            logging.warning('Dropping the torn last line of %s: %r', self._jsonl_path, line[:80])
            continue
          raise ValueError(f'{self._jsonl_path}, line {i + 1}, is not JSON: {line[:80]!r}; '
                           'repair or remove that line to resume.') from None
        if record.get('step', 0) <= resume_from_step:
          keep.append(line if line.endswith('\n') else line + '\n')
      files.write_text_atomically(self._jsonl_path, ''.join(keep))
    from tensorboard.summary.writer import event_file_writer  # pylint: disable=g-import-not-at-top
    self._tb = event_file_writer.EventFileWriter(os.path.join(workdir, 'tensorboard'))

  def write_scalars(self, step: int, scalars: Mapping[str, float]):
    if not self._enabled:
      return
    scalars = {k: float(v) for k, v in scalars.items()}
    with open(self._jsonl_path, 'a') as f:
      f.write(json.dumps({'step': int(step), **scalars}) + '\n')
    from tensorboard.compat.proto import event_pb2  # pylint: disable=g-import-not-at-top
    from tensorboard.compat.proto import summary_pb2  # pylint: disable=g-import-not-at-top
    summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=name, simple_value=value)
                                         for name, value in scalars.items()])
    self._tb.add_event(event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary))
    self._tb.flush()

  def close(self):
    if self._tb is not None:
      self._tb.close()
