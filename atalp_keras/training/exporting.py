"""The SavedModel export at the end of a run, for TF Serving.

An existing export version is never overwritten: a run exports the next free
version (``1``, ``2``, ...) unless ``export_version`` names one, which must be
free (checked before training starts).
"""

import os
import re
import shutil

import keras
from absl import logging

from atalp_keras import export
from atalp_keras.errors import UsageError
from atalp_keras.training.config import model_names
from atalp_keras.training.run_folder import check_writable
from atalp_keras.training.run_lock import pid_alive

# The folder export.export_saved_model writes a version into before renaming
# it: ``.tmp-<version>-<pid>``.
_TEMP_EXPORT = re.compile(r"^\.tmp-\d+-(\d+)$")


def export_base(config, info):
    """``<export_dir>/<export_name>``; the name defaults to
    ``<dataset>_<model>_<method>``."""
    name = config.export_name
    if not name:
        model = config.model if config.model in model_names() else \
            os.path.splitext(os.path.basename(config.model))[0]
        name = f"{info.name}_{model}_{config.method}"
        name = "".join(ch if ch.isalnum() or ch in "-_." else "_"
                       for ch in name)
    return os.path.join(config.export_dir, name)


def check_export_target(base_dir, version):
    """Refuses an export folder that is a file, cannot be written or
    holds the requested version."""
    if os.path.exists(base_dir) and not os.path.isdir(base_dir):
        raise UsageError(
            f"The export folder '{base_dir}' is a file; it must be a folder of "
            f"numbered versions. Received: export folder {base_dir!r}")
    check_writable(base_dir, "export_dir")
    if version and os.path.exists(os.path.join(base_dir, str(version))):
        raise UsageError(
            f"Export version {version} already exists in '{base_dir}'; "
            f"versions are never overwritten. Use --export_version=0 for the "
            f"next free one. Received: export_version={version}")


def export_classifier(config, info, base_dir, classifier_path, commit, test):
    """Exports a fresh, strategy-free copy of the saved final classifier;
    returns the version folder. ``test`` is the run's final test record."""
    remove_dead_exports(base_dir)
    classifier = keras.models.load_model(classifier_path, compile=False)
    metadata = {
        "dataset": config.dataset,
        "dataset_name": info.name,
        "data_dir": config.data_dir,
        "image_size": list(config.image_size) if config.image_size else None,
        "data_seed": config.data_seed,
        "class_names": [str(c) for c in info.class_names],
        "model": config.model,
        "method": config.method,
        "eps": config.eps,
        "step_size": config.step_size,
        "num_steps": config.num_steps,
        "seed": config.seed,
        "git_commit": commit,
        "model_dir": os.path.abspath(config.model_dir),
        "test_accuracy": test["accuracy"],
        "test_adv_accuracy": test["adv_accuracy"],
    }
    try:
        return export.export_saved_model(
            classifier, base_dir, version=config.export_version or None,
            metadata=metadata)
    except ValueError as error:
        # Only a version that appeared meanwhile gets here (checked up front).
        raise UsageError(str(error)) from None


def remove_dead_exports(base_dir):
    """Removes the temporary folders of exports whose process is gone (a
    kill during the export leaves them; a live export's stays)."""
    if not os.path.isdir(base_dir):
        return
    for name in sorted(os.listdir(base_dir)):
        match = _TEMP_EXPORT.match(name)
        if match and not pid_alive(int(match.group(1))):
            logging.warning("Removing '%s', left by an export that was "
                            "killed.", os.path.join(base_dir, name))
            shutil.rmtree(os.path.join(base_dir, name), ignore_errors=True)
