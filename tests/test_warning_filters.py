"""The suite's warning filters (pytest.ini): a deprecation raised in the
package's own code fails the test that triggers it, one raised elsewhere stays
a warning. Each case issues the warning from a frame whose module name is the
one under test, which is what a filter's module regex is matched against."""

import warnings

import pytest


def _warn_from(module, category=DeprecationWarning, message="probe"):
    exec("import warnings\nwarnings.warn(message, category)",
         {"__name__": module, "category": category, "message": message})


def _recorded(module, category=DeprecationWarning, message="probe"):
    # Not pytest.warns: it resets the filters to "always", so an "error"
    # filter would go unnoticed. catch_warnings(record=True) keeps them.
    with warnings.catch_warnings(record=True) as caught:
        _warn_from(module, category, message)
    return [str(w.message) for w in caught]


@pytest.mark.parametrize("module", ["atalp_keras", "atalp_keras.training.config"])
def test_a_deprecation_in_the_package_is_an_error(module):
    with pytest.raises(DeprecationWarning, match="probe"):
        _warn_from(module)


@pytest.mark.parametrize("module", ["keras.src.trainers.trainer", "atalp_keras_other",
                                    "tests.helpers"])
def test_a_deprecation_elsewhere_stays_a_warning(module):
    assert _recorded(module) == ["probe"]


def test_other_warnings_of_the_package_stay_warnings():
    assert _recorded("atalp_keras.model", UserWarning) == ["probe"]


COPY = "__array__ implementation doesn't accept a copy keyword, so passing copy=False failed."
SHUFFLE = "`shuffle=True` was passed, but will be ignored since the data `x` was provided"


def test_the_two_keras_warnings_are_filtered_where_keras_raises_them():
    assert _recorded("keras.src.backend.tensorflow.core", DeprecationWarning, COPY) == []
    # The JAX backend's (tests/jax_backend) from its core and from Keras' variables.
    assert _recorded("keras.src.backend.jax.core", DeprecationWarning, COPY) == []
    assert _recorded("keras.src.backend.common.variables", DeprecationWarning, COPY) == []
    assert _recorded("keras.src.backend.jax.trainer", DeprecationWarning, COPY) == [COPY]
    assert _recorded("keras.src.trainers.epoch_iterator", UserWarning, SHUFFLE) == []


def test_the_same_warnings_from_the_package_are_not_filtered():
    with pytest.raises(DeprecationWarning):
        _warn_from("atalp_keras.artifacts", DeprecationWarning, COPY)
    assert _recorded("atalp_keras.training.loop", UserWarning, SHUFFLE) == [SHUFFLE]
