"""Progress of long attacks on stderr: a Keras ``Progbar`` on a terminal, a
plain line now and then in a log file.

Results go to stdout (tables, JSON paths); progress must not mix with them,
and Keras' ``Progbar`` writes to stdout, hence the redirection. Where stderr
is not a terminal (a background run's log), a bar redrawn per batch is
noise, and Keras' one-line-at-the-end mode says nothing during an hour-long
Square: a line every `LOG_INTERVAL` seconds and one at the end instead.
"""

import contextlib
import sys
import time

import keras

LOG_INTERVAL = 60.0  # seconds between progress lines in a log file


class Progress:
    """Progress on stderr: a ``keras.utils.Progbar`` on a terminal, a line now
    and then in a log file, nothing at ``verbose=0``.

    Args:
        target: Total units of work (examples, queries, rounds).
        verbose: 0 silent, 1 a bar (where stderr is not a terminal: a line
            every `LOG_INTERVAL` seconds and one when the work is done).
        title: Printed once above the bar (e.g. ``"apgd-t"``).
        unit_name: Name of a unit in the bar.
    """

    def __init__(self, target, verbose=0, title=None, unit_name="step"):
        self.verbose = int(verbose or 0)
        self.target = max(int(target), 1)
        self.title, self.unit_name = title, unit_name
        self._bar, self._log = None, None
        self._current = 0
        if self.verbose:
            if title:
                print(title, file=sys.stderr, flush=True)
            if _is_terminal(sys.stderr):
                with contextlib.redirect_stdout(sys.stderr):
                    self._bar = keras.utils.Progbar(self.target, verbose=1,
                                                    stateful_metrics=["robust"],
                                                    unit_name=unit_name)
            else:
                now = time.time()
                self._log = {"start": now, "last": now}

    def update(self, current, **values):
        """Sets the bar to ``current`` units; ``values`` are shown beside it."""
        self._current = int(current)
        if self._bar is not None:
            with contextlib.redirect_stdout(sys.stderr):
                self._bar.update(self._current, values=list(values.items()) or None)
        elif self._log is not None:
            now = time.time()
            ended = self._current >= self.target
            if ended and self._log.get("ended"):
                return  # the end line is out; later calls at the end add nothing
            if ended or now - self._log["last"] >= LOG_INTERVAL:
                self._log["ended"] = ended
                self._log["last"] = now
                shown = "".join(f" - {k}: {v}" for k, v in values.items())
                units = (self.unit_name[:-1] + "ies" if self.unit_name.endswith("y")
                         else self.unit_name + "s")
                print(f"{self.title or 'progress'}: {self._current}/{self.target} "
                      f"{units} ({100.0 * self._current / self.target:.0f}%) - "
                      f"{now - self._log['start']:.0f} s{shown}", file=sys.stderr, flush=True)

    def add(self, units, **values):
        """Advances the bar by ``units``."""
        self.update(self._current + int(units), **values)

    def finish(self, **values):
        """Moves the bar to its end (work may finish early); in a log file,
        the end line is written once, and again with ``values`` if given."""
        if self._log is not None and values:
            self._log["ended"] = False
        if self._current < self.target or self._bar is not None or values:
            self.update(self.target, **values)


def _is_terminal(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def silent():
    """A `Progress` that shows nothing."""
    return Progress(1, verbose=0)
