"""Dataset sources by name: each source module registers its prefix here.

A source is a function ``load(request) -> DatasetInfo``. It is registered
either as a bare name (``digits``, ``fashion_mnist``) or as a prefix that
takes an argument after a colon (``tfds:<name>``, ``folder:<path>``).
`load_dataset` parses the spec, checks the shared arguments, dispatches, and
refuses what no classifier can be trained on (fewer than 2 classes, an empty
split).
"""

import dataclasses

import numpy as np

from atalp_keras.errors import UsageError


@dataclasses.dataclass(frozen=True)
class SourceRequest:
    """What a source is asked to load.

    Attributes:
        spec: The whole dataset spec as the user gave it (for messages).
        argument: The text after ``prefix:`` (``""`` for bare sources).
        data_dir: The ``data_dir`` argument (``--data_dir``), or None.
        image_size: ``(H, W)`` to resize to, or None.
        seed: Seed of stratified splits (the data seed).
        test_fraction: Fraction held out where a source has no test split.
    """

    spec: str
    argument: str
    data_dir: object
    image_size: object
    seed: int
    test_fraction: float


@dataclasses.dataclass(frozen=True)
class _Source:
    load: object
    usage: str
    argument: str  # "" for bare names, else what follows the colon
    example: str


_SOURCES = {}


def register_source(prefix, usage, argument="", example=""):
    """Registers ``load(request)`` under ``prefix`` (a decorator).

    Args:
        prefix: The name, e.g. ``"digits"`` or ``"folder"``.
        usage: How the spec is written in help texts (``"folder:<path>"``).
        argument: ``""`` for a bare name; else what must follow the colon
            (``"name"``, ``"path"``), used in the message when it is missing.
        example: An example argument for that message.
    """
    def decorator(load):
        if prefix in _SOURCES:
            raise RuntimeError(f"Dataset source {prefix!r} registered twice.")
        _SOURCES[prefix] = _Source(load, usage, argument, example)
        return load
    return decorator


def source_usage():
    """The accepted specs, comma-separated, in registration order."""
    _import_sources()
    return ", ".join(source.usage for source in _SOURCES.values())


def _import_sources():
    from atalp_keras.data import sources  # noqa: F401  (registers them)


def load_dataset(spec="digits", data_dir=None, image_size=None, seed=0,
                 test_fraction=0.2):
    """Loads a dataset as unbatched train/test ``tf.data`` pipelines.

    Args:
        spec: Which data to load:
            ``"digits"``: scikit-learn's 1,797 8x8 handwritten digits (bundled,
            no download), scaled by 1/16, with a stratified split.
            ``"fashion_mnist"``: Fashion-MNIST's 60,000/10,000 28x28 images
            (the official split) from the IDX files in ``data_dir``, or, when
            ``data_dir`` is None, where Debian's ``dataset-fashion-mnist``
            installs them.
            ``"tfds:<name>[:split]"``: a TFDS dataset already prepared in
            ``data_dir``. Training uses split ``train``; the test set is
            ``split`` if given (e.g. ``tfds:cifar10:test[:500]``), else
            ``test``, else ``validation``, else the last ``test_fraction`` of
            ``train``. ``<name>`` may carry a config and version
            (``mnist/3.0.1``, ``mnist:3.*.*``).
            ``"folder:<path>"``: images in ``path/{train,test}/<class>/`` (or
            ``val``/``validation`` for test), or in ``path/<class>/`` with a
            stratified split. PNG, JPEG, BMP and GIF are read.
            ``"idx:<path>"``: a folder with MNIST-format IDX files
            (``train-images-idx3-ubyte[.gz]``, ``t10k-...`` or ``test-...``).
        data_dir: Data folder of ``tfds:`` (None: TFDS's default,
            ``~/tensorflow_datasets``) and ``fashion_mnist``.
        image_size: Optional ``(H, W)`` (or one int for square images) to
            resize every image to (bilinear, antialiased). Required for folders
            whose images differ in size and TFDS sets without a fixed size.
        seed: Seed of the stratified splits (``digits``, ``folder:``).
        test_fraction: Fraction held out as test set when the source has no
            test split of its own; must be in ``(0, 1)``.

    Returns:
        A `DatasetInfo`.

    Raises:
        UsageError: If the spec is unknown, the data cannot be found or read,
            has fewer than 2 classes or an empty split, or an argument is out
            of range. The message names the received value.
    """
    _import_sources()
    if not isinstance(spec, str) or not spec.strip():
        raise UsageError(f"Unknown dataset source {spec!r}. Expected one of: "
                         f"{source_usage()}. Received: dataset={spec!r}")
    spec = spec.strip()
    image_size = check_image_size(image_size)
    test_fraction = _check_test_fraction(test_fraction)
    source = _SOURCES.get(spec)
    prefix, _, argument = spec.partition(":")
    if source is not None and not source.argument:
        argument = ""
    else:
        source = _SOURCES.get(prefix)
        if source is None or not source.argument:
            raise UsageError(f"Unknown dataset source '{spec}'. Expected one "
                             f"of: {source_usage()}. Received: dataset={spec!r}")
        if not argument.strip():
            raise UsageError(
                f"Dataset source '{prefix}:' needs a {source.argument} after "
                f"the colon, e.g. '{prefix}:{source.example}'. Received: "
                f"dataset={spec!r}")
    info = source.load(SourceRequest(spec, argument, data_dir, image_size,
                                     seed, test_fraction))
    _check_trainable(info, spec)
    return info


def _check_trainable(info, spec):
    if info.num_classes < 2:
        raise UsageError(
            f"Dataset {spec!r} has {info.num_classes} class "
            f"({', '.join(map(str, info.class_names)) or 'none'}); a "
            f"classifier needs at least 2 classes. Received: dataset={spec!r}")
    if info.num_train < 1 or info.num_test < 1:
        raise UsageError(
            f"Dataset {spec!r} has {info.num_train} training and "
            f"{info.num_test} test examples; both must be >= 1. Received: "
            f"dataset={spec!r}")


def check_image_size(image_size):
    """None, an int or an ``(H, W)`` pair of positive ints -> None or a tuple.

    Raises:
        UsageError: For anything else, naming ``image_size``.
    """
    if image_size is None:
        return None
    if isinstance(image_size, (int, np.integer)) \
            and not isinstance(image_size, bool):
        image_size = (image_size, image_size)
    try:
        size = tuple(int(d) for d in image_size)
        valid = len(size) == 2 and all(d >= 1 for d in size) and all(
            not isinstance(d, bool) and float(d) == int(d) for d in image_size)
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise UsageError(
            "`image_size` must be None, an int or a pair (height, width) of "
            f"positive ints. Received: image_size={image_size!r}")
    return size


def _check_test_fraction(test_fraction):
    try:
        value = float(test_fraction)
    except (TypeError, ValueError):
        value = float("nan")
    if not 0.0 < value < 1.0:
        raise UsageError("`test_fraction` must be a number in (0, 1). "
                         f"Received: test_fraction={test_fraction!r}")
    return value
