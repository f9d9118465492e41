"""The tests of the package under Keras' JAX backend.

A package (``__init__.py``), so this conftest is ``jax_backend.conftest`` and
does not shadow tests/conftest.py for ``from conftest import ...``; not named
``jax``, so nothing can take it for the library.

CI runs this folder as its own job: ``KERAS_BACKEND=jax pytest tests/jax_backend``.
Under any other backend the folder is skipped (its modules are not even
imported: they build models and trace functions for JAX).
"""

import keras

if keras.backend.backend() != "jax":
    collect_ignore_glob = ["test_*.py"]
