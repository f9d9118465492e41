"""Tests of the spec registry: dispatch, unknown specs, shared arguments."""

import numpy as np
import pytest

from atalp_keras import data
from atalp_keras.data import load_dataset, registry
from atalp_keras.data.info import info_from_arrays
from atalp_keras.errors import UsageError


@pytest.mark.parametrize("spec, words", [
    ("foo:x", ["Unknown dataset source 'foo:x'", "digits, tfds:<name>[:split]",
               "Received: dataset='foo:x'"]),
    ("mnist", ["Unknown dataset source 'mnist'"]),
    ("tfds:", ["needs a name", "Received: dataset='tfds:'"]),
    ("folder:", ["needs a path"]),
])
def test_unknown_or_incomplete_spec(spec, words):
    with pytest.raises(ValueError) as error:
        load_dataset(spec)
    for word in words:
        assert word in str(error.value)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"test_fraction=1\.5"):
        load_dataset("digits", test_fraction=1.5)
    with pytest.raises(ValueError, match=r"image_size=\(8, 0\)"):
        load_dataset("digits", image_size=(8, 0))


def test_spec_errors_are_usage_errors_naming_every_source():
    with pytest.raises(UsageError) as error:
        load_dataset("cifar10")
    message = str(error.value)
    for usage in ("digits", "fashion_mnist", "tfds:<name>[:split]", "folder:<path>",
                  "idx:<path>"):
        assert usage in message
    assert data.source_usage().split(", ")[-1] == "fashion_mnist"
    with pytest.raises(UsageError, match="needs a path"):
        load_dataset("idx: ")


@pytest.fixture
def scratch_registry(monkeypatch):
    """Registrations made by a test are dropped after it."""
    monkeypatch.setattr(registry, "_SOURCES", dict(registry._SOURCES))


def _arrays_source(class_names, labels, num_test=2):
    pixels = np.zeros((len(labels), 2, 2, 1), np.uint8)

    def load(request):
        return info_from_arrays(request.argument or "made", (pixels, labels),
                                (pixels[:num_test], labels[:num_test]), 255.0,
                                class_names, image_size=request.image_size)
    return load


def test_registered_source_is_dispatched_with_its_argument(scratch_registry):
    data.register_source("made", usage="made:<name>", argument="name",
                         example="x")(_arrays_source(["a", "b"], np.array([0, 1, 1])))
    info = load_dataset("made:here", image_size=3)
    assert (info.name, info.num_classes, info.input_shape) == ("here", 2, (3, 3, 1))
    assert "made:<name>" in data.source_usage()
    with pytest.raises(RuntimeError, match="registered twice"):
        data.register_source("made", usage="made")(lambda request: None)


def test_fewer_than_two_classes_or_an_empty_split_is_refused(scratch_registry):
    data.register_source("one_class", usage="one_class")(
        _arrays_source(["only"], np.zeros(3, np.int32)))
    with pytest.raises(UsageError) as error:
        load_dataset("one_class")
    assert str(error.value) == (
        "Dataset 'one_class' has 1 class (only); a classifier needs at least 2 "
        "classes. Received: dataset='one_class'")
    data.register_source("no_test", usage="no_test")(
        _arrays_source(["a", "b"], np.array([0, 1]), num_test=0))
    with pytest.raises(UsageError, match="2 training and 0 test examples; both must be >= 1"):
        load_dataset("no_test")
