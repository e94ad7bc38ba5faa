"""Stopping long host-side loops on SIGTERM or SIGINT within seconds.

A preemptible VM or TPU gets about 30 seconds between SIGTERM and the kill. The compiled calls of a
validation, a log Z estimate, the active-units pass or the sample-quality report take seconds each,
but their loops take minutes to hours. Each such loop calls `check()` between its compiled calls:
once a signal has been `request`ed it raises `Interrupted`, and whoever runs the phase keeps what it
can (the trainer saves the state of its last step and marks the phase to redo; a resumable
evaluation has its partial sums on disk already) and exits with `Interrupted.exit_code`.

The flag is process-wide. `handling()` installs the handlers that set it (the evaluation binaries);
the trainer's own handlers set it too (`train.trainer`), in one-process runs only: with several
processes a host that left a collective loop alone would leave the others waiting, so there the
host phases run to their end and training stops at the next step boundary that all hosts agree on.
"""

import contextlib
import signal
import threading
from typing import Iterable, Iterator, TypeVar

T = TypeVar('T')

_requested = ''


class Interrupted(Exception):
  """A host-side phase stopped between two compiled calls because a signal was received."""

  def __init__(self, signal_name: str, what: str = ''):
    super().__init__(f'{signal_name}: {what or "stopped"}.')
    self.signal_name = signal_name
    self.exit_code = 128 + int(signal.Signals[signal_name])


def request(signal_name: str) -> None:
  """Asks every loop that calls `check` to stop (`signal_name`: e.g. 'SIGTERM')."""
  global _requested
  _requested = signal_name


def requested() -> str:
  """The name of the signal that asked to stop, or ''."""
  return _requested


def clear() -> None:
  global _requested
  _requested = ''


def check() -> None:
  """Raises `Interrupted` if a stop was requested: call it between compiled calls of a long loop."""
  if _requested:
    raise Interrupted(_requested)


def checked(iterable: Iterable[T]) -> Iterator[T]:
  """The items of `iterable`, calling `check` before each: for a loop of compiled calls."""
  for item in iterable:
    check()
    yield item


SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextlib.contextmanager
def handling():
  """While inside: SIGTERM and SIGINT `request` a stop instead of killing the process at once (in
  the main thread; elsewhere nothing is installed). The previous handlers and a clear flag come back
  on exit."""
  previous = {}
  clear()
  if threading.current_thread() is threading.main_thread():
    for sig in SIGNALS:
      previous[sig] = signal.signal(sig, lambda signum, frame: request(signal.Signals(signum).name))
  try:
    yield
  finally:
    for sig, handler in previous.items():
      signal.signal(sig, handler)
    clear()
