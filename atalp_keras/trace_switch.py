"""A thread-local on/off setting that functions read while they are traced."""

import contextlib
import threading


class TraceSwitch:
    """On or off per thread, ``default`` until a `scope` says otherwise.

    A setting that changes what a ``tf.function`` traces (how attacks run their
    steps, which view of the model they call) is read at trace time, so it
    takes effect for the functions first called inside the scope.
    """

    def __init__(self, default):
        self._default = bool(default)
        self._local = threading.local()

    def enabled(self):
        return getattr(self._local, "value", self._default)

    @contextlib.contextmanager
    def scope(self, enabled):
        previous = self.enabled()
        self._local.value = bool(enabled)
        try:
            yield
        finally:
            self._local.value = previous
