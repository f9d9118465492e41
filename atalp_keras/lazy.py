"""TensorFlow imported on first use, for modules that need it only in some
functions: under ``KERAS_BACKEND=jax`` the attacks import the losses and the
input checks without importing TensorFlow (which a JAX-only machine may not
have), and the functions that do need it import it when first called."""

import importlib


class LazyModule:
    """A module imported at the first attribute read."""

    def __init__(self, name):
        self._name = name
        self._module = None

    def __getattr__(self, attribute):
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attribute)

    def __repr__(self):
        return f"LazyModule({self._name!r})"


tensorflow = LazyModule("tensorflow")
