"""Versioned SavedModels for TensorFlow Serving, and loading classifiers back.

Layout (what TF Serving watches)::

    base_dir/
      1/  saved_model.pb  variables/  assets.extra/atalp_metadata.json
      2/  ...

The ``serving_default`` signature takes ``images`` (float32, ``(N, H, W, C)``,
pixels in ``[0, 1]``) and returns ``logits``, ``probabilities`` (softmax) and
``classes`` (int64 argmax), all computed in inference mode
(``model(images, training=False)``). Serve it with, e.g.::

    tensorflow_model_server --rest_api_port=8501 \\
        --model_name=atalp --model_base_path=/abs/path/to/base_dir

A version folder appears atomically (written under a hidden temp name, then
renamed), so a server polling ``base_dir`` never sees half a model.
"""

import json
import os
import shutil

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from atalp_keras import artifacts
from atalp_keras.features import check_logits_output, probe_batch

SIGNATURE_NAME = "serving_default"
INPUT_NAME = "images"
METADATA_FILE = os.path.join("assets.extra", "atalp_metadata.json")


def export_saved_model(model, base_dir, version=None, input_shape=None,
                       metadata=None):
    """Exports ``model`` as ``base_dir/<version>/``, a SavedModel for serving.

    Args:
        model: A Keras classifier returning logits from
            ``model(x, training=False)``: a functional model, or a
            ``keras.Model`` subclass (such as the package's training wrapper).
        base_dir: Folder holding the numbered versions; created if missing.
        version: Integer version >= 1. ``None`` takes the next free one
            (largest existing version + 1, starting at 1). An existing version
            is never overwritten.
        input_shape: ``(H, W, C)`` of one image. Needed only when the model does
            not tell it (a subclass without a ``classifier`` attribute, or a
            model accepting any image size).
        metadata: Optional JSON-serialisable dict stored with the model in
            ``assets.extra/atalp_metadata.json`` (e.g. ``class_names``,
            ``dataset``, ``method``).

    Returns:
        The path of the new version folder, ``base_dir/<version>``.

    Raises:
        ValueError: If ``base_dir`` is a file, the version exists or is not a
            positive integer, the input shape cannot be found, the model does
            not return ``(N, K)`` logits (probabilities are refused by
            behaviour: `features.check_logits_output`), or ``metadata`` is not
            JSON-able.
    """
    base_dir = os.fspath(base_dir)
    version, target = _resolve_version(base_dir, version)
    input_shape = _find_input_shape(model, input_shape)
    num_classes = _check_served_logits(model, input_shape)
    info = _metadata(metadata, input_shape, num_classes)
    _write_version(_serving_archive(model, input_shape), info, base_dir, version, target)
    return target


def _resolve_version(base_dir, version):
    """``(version, target folder)``: the next free version, or a checked one."""
    if os.path.exists(base_dir) and not os.path.isdir(base_dir):
        raise ValueError(
            f"`base_dir` must be a directory (it holds one folder per "
            f"version), but it is a file. Received: base_dir={base_dir!r}"
        )
    if version is None:
        version = max(_numeric_versions(base_dir), default=0) + 1
    elif (isinstance(version, bool)
          or not isinstance(version, (int, np.integer)) or version < 1):
        raise ValueError(
            f"`version` must be an integer >= 1 (TF Serving loads numeric "
            f"folders). Received: version={version!r}"
        )
    version = int(version)
    target = os.path.join(base_dir, str(version))
    if os.path.exists(target):
        raise ValueError(
            f"Version {version} already exists at '{target}'; versions are "
            f"never overwritten. Pass another version or version=None for the "
            f"next free one. Received: version={version}"
        )
    return version, target


def _check_served_logits(model, input_shape):
    """The number of classes, after checking the model returns logits."""
    logits = model(np.zeros((1,) + input_shape, np.float32), training=False)
    if len(logits.shape) != 2 or logits.shape[-1] is None:
        raise ValueError(
            "The model must return logits of shape (N, num_classes). "
            f"Received: output shape {tuple(logits.shape)} for an input of "
            f"shape {(1,) + input_shape}"
        )
    check_logits_output(model, probe_batch(input_shape))
    return int(logits.shape[-1])


def _serving_archive(model, input_shape):
    """An `ExportArchive` with the ``serving_default`` endpoint."""
    archive = keras.export.ExportArchive()
    archive.track(model)

    def serve(images):
        logits = ops.cast(model(images, training=False), "float32")
        return {
            "logits": logits,
            "probabilities": ops.softmax(logits, axis=-1),
            # tf.argmax, not ops.argmax: Keras' TensorFlow argmax tells -0.0
            # from 0.0 with a tf.BitwiseAnd, which TFLite has no built-in
            # kernel for, so the export would convert only with TF Select.
            "classes": tf.argmax(logits, axis=-1, output_type=tf.int64),
        }

    archive.add_endpoint(
        SIGNATURE_NAME, serve,
        input_signature=[tf.TensorSpec((None,) + input_shape, tf.float32,
                                       name=INPUT_NAME)],
    )
    return archive


def _write_version(archive, info, base_dir, version, target):
    """Writes into a hidden temporary folder, then renames it to ``target``."""
    os.makedirs(base_dir, exist_ok=True)
    # Hidden and non-numeric: TF Serving ignores it while it is written.
    temp_dir = os.path.join(base_dir, f".tmp-{version}-{os.getpid()}")
    shutil.rmtree(temp_dir, ignore_errors=True)
    try:
        archive.write_out(temp_dir, verbose=False)
        os.makedirs(os.path.join(temp_dir, "assets.extra"), exist_ok=True)
        with open(os.path.join(temp_dir, METADATA_FILE), "w") as handle:
            json.dump(info, handle, indent=2, sort_keys=True)
        if os.path.exists(target):  # Another process took it meanwhile.
            raise ValueError(
                f"Version {version} appeared at '{target}' during the export; "
                f"it was left untouched. Received: version={version}"
            )
        os.rename(temp_dir, target)
    except BaseException:
        shutil.rmtree(temp_dir, ignore_errors=True)
        raise


def load_classifier(path):
    """Loads a classifier saved as a ``.keras`` file or a SavedModel.

    Args:
        path: A ``.keras`` (or legacy ``.h5``) file; a SavedModel folder; or a
            folder of numbered versions (the highest version is loaded).

    Returns:
        A ``keras.Model`` callable as ``model(x, training=False) -> logits``.
        For a SavedModel it is a `SavedModelClassifier`, with ``input_shape``
        ``(None, H, W, C)``, ``num_classes``, ``class_names`` and ``metadata``;
        gradients with respect to ``x`` flow through it, so attacks work.

    Raises:
        ValueError: If ``path`` is missing, is a folder holding neither a
            SavedModel nor numbered versions of one, or is not a Keras file.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ValueError(
            f"No model at this path. Expected a .keras file or a SavedModel "
            f"folder. Received: path={path!r}"
        )
    if os.path.isdir(path):
        return SavedModelClassifier(_resolve_saved_model_dir(path))
    if not path.endswith((".keras", ".h5")):
        raise ValueError(
            f"Expected a .keras file or a SavedModel folder. Received: "
            f"path={path!r}"
        )
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as error:  # Keras raises several types for bad files.
        raise ValueError(
            f"Cannot load '{path}' as a Keras model file "
            f"({type(error).__name__}: {error}). Received: path={path!r}"
        ) from None


class SavedModelClassifier(keras.Model):
    """A reloaded SavedModel's ``serving_default`` as a logits Keras model.

    Calls the exported signature (the TF Serving contract itself, not a Keras
    re-creation), so what is attacked is exactly what is served. The object
    returned by ``tf.saved_model.load`` stays referenced here: its variables
    are freed when it is garbage collected.

    Args:
        path: A SavedModel folder (one version).
    """

    def __init__(self, path, **kwargs):
        super().__init__(**kwargs)
        self.saved_model_path = path
        self._loaded = tf.saved_model.load(path)
        signatures = self._loaded.signatures
        if SIGNATURE_NAME not in signatures:
            raise ValueError(
                f"The SavedModel at '{path}' has no '{SIGNATURE_NAME}' "
                f"signature. Received signatures: {list(signatures.keys())}"
            )
        self._signature = signatures[SIGNATURE_NAME]
        inputs = self._signature.structured_input_signature[1]
        outputs = self._signature.structured_outputs
        if len(inputs) != 1:
            raise ValueError(
                f"The '{SIGNATURE_NAME}' signature of '{path}' must take one "
                f"image input. Received inputs: {sorted(inputs)}"
            )
        self._input_key, input_spec = next(iter(inputs.items()))
        if "logits" in outputs:
            self._output_key = "logits"
        elif len(outputs) == 1:
            self._output_key = next(iter(outputs))
        else:
            raise ValueError(
                f"The '{SIGNATURE_NAME}' signature of '{path}' has no 'logits' "
                f"output. Received outputs: {sorted(outputs)}"
            )
        self._input_shape = (None,) + tuple(input_spec.shape[1:])
        self._input_dtype = input_spec.dtype
        self.num_classes = int(outputs[self._output_key].shape[-1])
        self.metadata = _read_metadata(path)
        self.class_names = self.metadata.get("class_names")
        self.built = True

    @property
    def input_shape(self):
        return self._input_shape

    def call(self, x, training=False):
        del training  # The export holds the inference-mode graph only.
        x = tf.cast(x, self._input_dtype)
        return self._signature(**{self._input_key: x})[self._output_key]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)


def _numeric_versions(base_dir):
    if not os.path.isdir(base_dir):
        return []
    return [int(name) for name in os.listdir(base_dir) if name.isdigit()]


def _resolve_saved_model_dir(path):
    """A SavedModel folder itself, or the highest numbered version in it."""
    if _is_saved_model(path):
        return path
    versions = sorted(v for v in _numeric_versions(path)
                      if _is_saved_model(os.path.join(path, str(v))))
    if not versions:
        raise ValueError(
            f"'{path}' holds no SavedModel (no saved_model.pb) and no numbered "
            f"version folders with one. Received: path={path!r}"
        )
    return os.path.join(path, str(versions[-1]))


def _is_saved_model(path):
    return any(os.path.isfile(os.path.join(path, name))
               for name in ("saved_model.pb", "saved_model.pbtxt"))


def _shape_or_none(shape):
    """``(None, H, W, C)`` (or ``(H, W, C)``) -> ``(H, W, C)`` of ints."""
    try:
        shape = tuple(shape)
    except TypeError:
        return None
    if len(shape) == 4:
        shape = shape[1:]
    if len(shape) != 3 or not all(
            isinstance(d, (int, np.integer)) and not isinstance(d, bool)
            and d >= 1 for d in shape):
        return None
    return tuple(int(d) for d in shape)


def _model_input_shape(model):
    try:
        return getattr(model, "input_shape", None)
    except Exception:  # Unbuilt/subclassed models raise from the property.
        return None


def _find_input_shape(model, input_shape):
    if input_shape is not None:
        shape = _shape_or_none(input_shape)
        if shape is None:
            raise ValueError(
                "`input_shape` must be (H, W, C) of positive ints. Received: "
                f"input_shape={input_shape!r}"
            )
        return shape
    for candidate in (model, getattr(model, "classifier", None)):
        if candidate is None:
            continue
        shape = _shape_or_none(_model_input_shape(candidate))
        if shape is not None:
            return shape
    raise ValueError(
        "Cannot tell the model's input shape (it has no fixed `input_shape` "
        "and no `classifier` attribute with one). Pass input_shape=(H, W, C). "
        f"Received: model of type {type(model).__name__}, input_shape=None"
    )


def _metadata(metadata, input_shape, num_classes):
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise ValueError(
            "`metadata` must be a dict (or None). Received: metadata of type "
            f"{type(metadata).__name__}"
        )
    info = dict(metadata)
    computed = {
        "input_shape": list(input_shape),
        "num_classes": num_classes,
        "signature": SIGNATURE_NAME,
        "input": INPUT_NAME,
        "outputs": ["logits", "probabilities", "classes"],
        "pixel_range": [0.0, 1.0],
        "keras_version": keras.__version__,
        "tensorflow_version": tf.__version__,
    }
    for key, value in computed.items():
        if key in info and info[key] != value:
            raise ValueError(
                f"metadata['{key}'] disagrees with the model: expected "
                f"{value!r}. Received: {info[key]!r}"
            )
        info[key] = value
    class_names = info.get("class_names")
    if class_names is not None and len(class_names) != num_classes:
        raise ValueError(
            f"metadata['class_names'] must name {num_classes} classes. "
            f"Received {len(class_names)} names: {class_names!r}"
        )
    try:
        json.dumps(info)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"`metadata` must be JSON-serialisable ({error}). Received: "
            f"metadata={metadata!r}"
        ) from None
    return info


def _read_metadata(path):
    metadata_path = os.path.join(path, METADATA_FILE)
    if not os.path.isfile(metadata_path):
        return {}
    return artifacts.read_json(metadata_path)
