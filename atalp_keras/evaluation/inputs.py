"""What an evaluation loads: the model (with what is known of its training)
and its test data, and the check that a transfer source fits the target."""

import os

from atalp_keras import artifacts, data, export
from atalp_keras.errors import UsageError


def check_source_compatible(source, target, source_path):
    """A transfer source must take the target's images and predict its classes.

    Raises:
        UsageError: naming both shapes / class counts.
    """
    def signature(model):
        shape = tuple(model.input_shape[1:])
        classes = getattr(model, "num_classes", None)
        if classes is None and getattr(model, "outputs", None):
            classes = int(model.outputs[0].shape[-1])
        return shape, classes

    (s_shape, s_classes), (t_shape, t_classes) = signature(source), signature(target)
    if s_shape != t_shape:
        raise UsageError(
            f"Source model {source_path!r} takes images of shape {s_shape}, but the "
            f"evaluated model takes {t_shape}: adversarial examples cannot transfer. "
            f"Received: source_model={source_path!r}")
    if s_classes is not None and t_classes is not None and s_classes != t_classes:
        raise UsageError(
            f"Source model {source_path!r} predicts {s_classes} classes, but the "
            f"evaluated model predicts {t_classes}. Received: source_model={source_path!r}")


# ------------------------------------------------- models and their data

# What the model card of a training run tells an evaluation (its defaults).
CARD_KEYS = ("dataset", "data_dir", "image_size", "data_seed", "method", "eps")


def resolve_model_path(path):
    """A training ``model_dir`` -> its ``classifier.keras``; other paths
    unchanged."""
    path = os.fspath(path)
    candidate = os.path.join(path, "classifier.keras")
    if os.path.isdir(path) and os.path.isfile(candidate) and not any(
            os.path.isfile(os.path.join(path, n))
            for n in ("saved_model.pb", "saved_model.pbtxt")):
        return candidate
    return path


def load_model_for_eval(path):
    """Loads a classifier and what is known about how it was trained.

    Args:
        path: A SavedModel folder (or a folder of numbered versions), a
            ``.keras`` file (a classifier or a saved ``ATALPModel``), or a
            training ``model_dir``.

    Returns:
        ``(model, metadata)``: a logits model and a dict that may hold
        ``dataset``, ``data_dir``, ``image_size``, ``data_seed``, ``method``,
        ``eps`` (from a SavedModel's metadata or the run's model card,
        `artifacts.read_model_card`) and ``name``.

    Raises:
        UsageError: If nothing loadable is at ``path``.
    """
    path = resolve_model_path(path)
    model = export.load_classifier(path)
    classifier = getattr(model, "classifier", None)
    metadata = {}
    if classifier is not None and hasattr(model, "stage_layers"):
        metadata["method"] = getattr(model, "method", None)
        model = classifier  # A saved training model: attack its classifier.
    if isinstance(model, export.SavedModelClassifier):
        metadata.update(model.metadata or {})
        metadata["name"] = _saved_model_label(model.saved_model_path)
    else:
        run_dir = os.path.dirname(os.path.abspath(path))
        card = artifacts.read_model_card(run_dir)
        if card is not None:
            for key in CARD_KEYS:
                metadata[key] = getattr(card, key)
            metadata["name"] = os.path.basename(run_dir)
        else:
            metadata["name"] = os.path.splitext(os.path.basename(path))[0]
    return model, {k: v for k, v in metadata.items() if v is not None}


def _saved_model_label(path):
    path = os.path.normpath(os.path.abspath(path))
    version = os.path.basename(path)
    if version.isdigit():
        return f"{os.path.basename(os.path.dirname(path))}_v{version}"
    return version


def load_test_arrays(spec, data_dir=None, image_size=None, data_seed=0,
                     num_examples=0, seed=0):
    """The test split of a dataset as numpy arrays.

    Args:
        spec, data_dir, image_size: As in `data.load_dataset`.
        data_seed: Seed of the train/test split (must match training).
        num_examples: Keep a fixed random subset of this many; 0 = all.
        seed: Seed of that subset.

    Raises:
        UsageError: If ``num_examples`` is more than the test split holds.

    Returns:
        ``(x, y, info)`` with ``info`` the `data.DatasetInfo`.
    """
    info = data.load_dataset(spec, data_dir=data_dir, image_size=image_size,
                             seed=data_seed)
    if num_examples > info.num_test:
        raise UsageError(
            f"--num_examples={num_examples} is more than the {info.num_test} test examples "
            f"of {info.name!r}: give at most {info.num_test}, or 0 for all of them.")
    test = info.test
    if num_examples and num_examples < info.num_test:
        test = test.shuffle(min(info.num_test, 10_000), seed=seed,
                            reshuffle_each_iteration=False)
    x, y = data.to_numpy(test, limit=num_examples or None)
    return x, y, info
