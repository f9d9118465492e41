"""Progress of long attacks: a Keras ``Progbar`` written to stderr.

Results go to stdout (tables, JSON paths); progress must not mix with them,
and Keras' ``Progbar`` writes to stdout, hence the redirection.
"""

import contextlib
import sys

import keras


class Progress:
    """A ``keras.utils.Progbar`` on stderr, or nothing at ``verbose=0``.

    Args:
        target: Total units of work (examples, queries, rounds).
        verbose: 0 silent, 1 a bar.
        title: Printed once above the bar (e.g. ``"apgd-t"``).
        unit_name: Name of a unit in the bar.
    """

    def __init__(self, target, verbose=0, title=None, unit_name="step"):
        self.verbose = int(verbose or 0)
        self._bar = None
        if self.verbose:
            if title:
                print(title, file=sys.stderr, flush=True)
            with contextlib.redirect_stdout(sys.stderr):
                self._bar = keras.utils.Progbar(max(int(target), 1), verbose=1, stateful_metrics=["robust"],
                                                unit_name=unit_name)

    def update(self, current, **values):
        """Sets the bar to ``current`` units; ``values`` are shown beside it."""
        if self._bar is not None:
            with contextlib.redirect_stdout(sys.stderr):
                self._bar.update(int(current), values=list(values.items()) or None)

    def add(self, units, **values):
        """Advances the bar by ``units``."""
        if self._bar is not None:
            with contextlib.redirect_stdout(sys.stderr):
                self._bar.add(int(units), values=list(values.items()) or None)

    def finish(self, **values):
        """Moves the bar to its end (work may finish early)."""
        if self._bar is not None:
            self.update(self._bar.target, **values)


def silent():
    """A `Progress` that shows nothing."""
    return Progress(1, verbose=0)
