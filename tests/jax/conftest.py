"""The tests of the package under Keras' JAX backend.

CI runs this folder as its own job: ``KERAS_BACKEND=jax pytest tests/jax``.
Under any other backend the folder is skipped (its modules are not even
imported: they build models and trace functions for JAX).
"""

import keras

if keras.backend.backend() != "jax":
    collect_ignore_glob = ["test_*.py"]
