"""What an analysis runs on: its models (run folders, ``.keras`` files,
SavedModels) and the test split of the data they were trained on.

The data facts (dataset, split seed, image size, class names) come from the
model's card (`atalp_keras.artifacts.read_model_card`, which also rebuilds
one for a legacy run folder from its metrics), or from a SavedModel's export
metadata. Flags may only fill in what no card says: a different split seed
would put training images into the "test" images.
"""

import dataclasses
import os
from typing import Optional

import numpy as np

from atalp_keras import artifacts, data, evaluation
from atalp_keras.errors import UsageError
from atalp_keras.features import resolve_stage_layers


@dataclasses.dataclass(frozen=True)
class DataSource:
    """Which test split an analysis reads, and where that was decided."""

    dataset: str = "digits"
    data_dir: Optional[str] = None
    data_seed: int = 0
    image_size: Optional[tuple] = None
    class_names: Optional[tuple] = None
    origin: str = "flags"

    def describe(self):
        """JSON-able facts for the results files."""
        return {"dataset": self.dataset, "data_seed": self.data_seed,
                "image_size": list(self.image_size) if self.image_size else None,
                "from": self.origin}


@dataclasses.dataclass
class LoadedModel:
    """A classifier, its display name, its path and its data (None: no card)."""

    name: str
    path: str
    model: object
    data: Optional[DataSource]

    @property
    def input_shape(self):
        shape = tuple(self.model.input_shape)
        return shape[1:] if len(shape) == 4 else shape


def check_exists(paths, flag):
    """Every path in ``paths`` exists; else a `UsageError` naming ``--flag``."""
    for path in [paths] if isinstance(paths, (str, os.PathLike)) else paths:
        if not os.path.exists(path):
            raise UsageError(f"--{flag}: no such file or folder: {path}")


def _has_stage_outputs(model):
    try:
        return bool(getattr(model, "inputs", None))
    except Exception:  # Subclassed models may raise from the property.
        return False


def _run_dir(path):
    """The run folder a model path belongs to (a run dir or its file's dir)."""
    resolved = evaluation.resolve_model_path(path)
    return path if resolved != os.fspath(path) else os.path.dirname(os.path.abspath(path))


def _optional_tuple(value):
    return tuple(value) if value else None


def _card_data(path, metadata):
    """``(name, data facts)``: from the run folder's card if it has one (the
    run folder names the model), else from the export metadata."""
    run_dir = _run_dir(path)
    card = artifacts.read_model_card(run_dir) if os.path.isdir(run_dir) else None
    name = metadata.get("name", os.path.basename(os.path.normpath(path)))
    if card is not None and card.dataset:
        return os.path.basename(os.path.normpath(run_dir)), DataSource(
            card.dataset, card.data_dir, int(card.data_seed or 0),
            _optional_tuple(card.image_size), _optional_tuple(card.class_names),
            origin=run_dir)
    if metadata.get("dataset"):
        return name, DataSource(
            metadata["dataset"], metadata.get("data_dir"), int(metadata.get("data_seed", 0)),
            _optional_tuple(metadata.get("image_size")),
            _optional_tuple(metadata.get("class_names")), origin=os.fspath(path))
    return name, None


def load_model(path, flag, need_stages=False):
    """Loads the model a flag names, with its name and data facts.

    Args:
        path: A training run folder (its ``classifier.keras``), a ``.keras``
            file (a classifier or a saved ``ATALPModel``) or a SavedModel.
        flag: The flag the path came from, for error messages.
        need_stages: Refuse models without stage outputs (SavedModels).

    Returns:
        A `LoadedModel`.

    Raises:
        UsageError: If nothing loadable is at ``path``.
    """
    check_exists(path, flag)
    try:
        model, metadata = evaluation.load_model_for_eval(path)
    except UsageError:
        raise
    except ValueError as error:  # The loader's "not a model" messages.
        raise UsageError(f"--{flag}={path}: {error}") from None
    if need_stages and not _has_stage_outputs(model):
        raise UsageError(
            f"--{flag}={path}: attention maps need the stage outputs, which only a "
            ".keras classifier has; a SavedModel exposes logits only.")
    name, data_source = _card_data(path, metadata)
    return LoadedModel(name, os.fspath(path), model, data_source)


def stage_names(model, stage_layers, flag="stage_layers"):
    """The stage layer names of a `LoadedModel` (``--stage_layers`` or the
    ResNet stage ends found automatically)."""
    try:
        return resolve_stage_layers(model.model, list(stage_layers) or None)
    except ValueError as error:  # Unknown or undetectable stage layers.
        # features raises UsageError in library spelling; name the flag.
        raise UsageError(f"--{flag} for {model.name}: {error}") from None


def _key(source):
    return (source.dataset, source.data_seed, source.image_size)


def resolve_data(models, dataset=None, data_dir=None, data_seed=None, image_size=None):
    """The test split the analysed ``models`` were trained against.

    Args:
        models: The analysed `LoadedModel`\\ s (not attack sources: their
            training data does not decide what is evaluated).
        dataset, data_dir, data_seed, image_size: The flags; None = unset.

    Returns:
        A `DataSource`: the models' card, with ``data_dir`` overridable (data
        moved to another machine), or the flags (defaults: digits, seed 0)
        when no model has a card.

    Raises:
        UsageError: If the models' cards disagree, or a flag contradicts them.
    """
    known = [m for m in models if m.data is not None]
    for other in known[1:]:
        if _key(other.data) != _key(known[0].data):
            raise UsageError(
                f"The models were trained on different data: {known[0].name} on "
                f"{_key(known[0].data)}, {other.name} on {_key(other.data)} (dataset, "
                "data_seed, image_size). Analyse them in separate runs.")
    if not known:
        return DataSource(dataset or "digits", data_dir, data_seed or 0, image_size)
    card = known[0].data
    given = {"dataset": dataset, "data_seed": data_seed, "image_size": image_size}
    for name, value in given.items():
        if value is None or value == getattr(card, name):
            continue
        if name == "image_size" and card.image_size is None:
            continue  # The card keeps the native size; the shape check decides.
        raise UsageError(
            f"--{name}={value} differs from the model card of {known[0].name} "
            f"({name}={getattr(card, name)!r} in {card.origin}): the analysis must "
            f"use the test split the model was trained against. Leave --{name} unset.")
    if image_size is not None and card.image_size is None:
        card = dataclasses.replace(card, image_size=tuple(image_size))
    return dataclasses.replace(card, data_dir=data_dir or card.data_dir)


def load_test_split(source, limit):
    """The first ``limit`` test images of ``source`` as float32/int32 arrays.

    Returns:
        ``(info, x, y, class_names)``; ``class_names`` from the card if it has
        them, else from the dataset.

    Raises:
        UsageError: If the data cannot be loaded.
    """
    try:
        info = data.load_dataset(source.dataset, data_dir=source.data_dir,
                                 image_size=source.image_size, seed=source.data_seed)
    except UsageError:
        raise
    except ValueError as error:  # The loaders' "cannot read this data" messages.
        raise UsageError(f"--dataset={source.dataset}: {error}") from None
    x, y = data.to_numpy(info.test, limit=limit)
    class_names = list(source.class_names or info.class_names)
    return info, x.astype(np.float32), y.astype(np.int32), class_names


def check_input_shapes(models, x, source):
    """Every model must take the images ``x`` of ``source``.

    Raises:
        UsageError: naming the model and both shapes.
    """
    for model in models:
        expected = model.input_shape
        if any(e is not None and e != a for e, a in zip(expected, x.shape[1:])):
            raise UsageError(
                f"Model {model.name} expects images of shape {tuple(expected)} but "
                f"dataset {source.dataset} has {tuple(x.shape[1:])}. Pass "
                "--image_size or another --dataset.")
