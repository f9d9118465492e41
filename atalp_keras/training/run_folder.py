"""The run folder of a training run (``model_dir``): checked before anything
expensive, started (flagfile, model card) once everything else is checked,
finished (models, metrics, card update) at the end.

File names come from `atalp_keras.artifacts`. This is the place for checks
on a run folder's integrity (what a resumed run may reuse).
"""

import dataclasses
import json
import os
import shutil
import tempfile

from atalp_keras import artifacts
from atalp_keras.errors import UsageError
from atalp_keras.training import run_lock
from atalp_keras.training.config import (BEFORE_RECORDED, GROWING_SETTINGS,
                                         NON_WEIGHT_SETTINGS)


@dataclasses.dataclass
class RunDir:
    """Where this task writes (``folder``), the run folder itself (``root``,
    the chief's, holding the record) and the run's (validated) config."""

    folder: artifacts.RunFolder
    root: artifacts.RunFolder
    config: object
    is_chief: bool

    @property
    def path(self):
        return self.folder.path

    @property
    def finished(self):
        """Whether the run folder holds a finished run."""
        return self.root.finished


def check_run_dir(config, cluster):
    """Checks the output folders before anything expensive runs (reads
    only: nothing is written).

    Raises:
        UsageError: If ``model_dir`` is a file or cannot be written, another
            live process trains in it, it holds a finished run (unless
            ``overwrite``), a run of other settings, or an interrupted run
            without a record of its settings.
    """
    model_dir = config.model_dir
    if os.path.exists(model_dir) and not os.path.isdir(model_dir):
        raise UsageError(f"`model_dir` is a file, not a folder. Received: "
                         f"model_dir={model_dir!r}")
    check_writable(model_dir, "model_dir")
    root = artifacts.RunFolder(model_dir)
    folder = root if cluster.is_chief else root.worker(cluster.task)
    run_lock.check_unlocked(folder.path)
    check_contents(root, config)
    return RunDir(folder, root, config, cluster.is_chief)


def check_contents(root, config):
    """Whether ``config`` may train in the run folder ``root`` as it is now.

    Raises:
        UsageError: As `check_run_dir`, unless ``config.overwrite``.
    """
    if config.overwrite:
        return
    model_dir = root.path
    if root.finished:
        raise UsageError(
            f"'{model_dir}' holds a finished run ({artifacts.METRICS_FILE} "
            f"exists). Use another --model_dir, or --overwrite to start over."
            f" Received: model_dir={model_dir!r}")
    if os.path.isfile(root.config):
        differences = config_differences(
            artifacts.read_json(root.config).get("config", {}), config)
        if differences:
            raise UsageError(
                f"'{model_dir}' holds an interrupted run of other settings "
                f"({artifacts.CONFIG_FILE}): {', '.join(differences)}. Start "
                f"it again with its settings to resume it, use another "
                f"--model_dir, or --overwrite to start over.")
    elif os.path.isdir(root.backup):
        raise UsageError(
            f"'{model_dir}' holds an interrupted run from before run folders "
            f"recorded their settings ({artifacts.BACKUP_DIR}/ but no "
            f"{artifacts.CONFIG_FILE}), so it cannot be checked against these"
            f" settings. Use --overwrite to start over in it, or another "
            f"--model_dir. Received: model_dir={model_dir!r}")


def record(config):
    """``config`` as the JSON-able dict the run folder records."""
    config = dataclasses.replace(config, flags_text=None)
    return json.loads(json.dumps(artifacts.to_python(
        dataclasses.asdict(config))))


def config_differences(recorded, config):
    """``["--name=old -> new", ...]``: the settings of ``config`` that a run
    recorded as ``recorded`` (a dict) may not change (see
    `config.NON_WEIGHT_SETTINGS` and `config.GROWING_SETTINGS`)."""
    current = record(config)
    lines = []
    for name, new in current.items():
        # A setting newer than the record: the value the run was trained with.
        if name in NON_WEIGHT_SETTINGS or (name not in recorded
                                           and name not in BEFORE_RECORDED):
            continue
        old = recorded.get(name, BEFORE_RECORDED.get(name))
        if old == new or (name in GROWING_SETTINGS
                          and isinstance(old, int) and new > old):
            continue
        lines.append(f"--{name}={_flag_text(old)} -> {_flag_text(new)}")
    return lines


def _flag_text(value):
    """A recorded value as it is written on the command line."""
    if value is None:
        return "''"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ",".join(_flag_text(v) for v in value) or "''"
    return str(value)


def check_writable(path, flag):
    """Refuses a ``path`` (to be created if missing) that this process
    cannot write, by writing (and removing) a probe file in it or in its
    deepest existing parent: permission bits do not tell for root, ACLs or
    read-only mounts.

    Raises:
        UsageError: Naming ``--<flag>`` and the reason.
    """
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    try:
        if not os.path.isdir(existing):
            raise NotADirectoryError(f"'{existing}' is a file")
        handle, probe = tempfile.mkstemp(prefix=".write-probe-",
                                         dir=existing)
        os.close(handle)
        os.remove(probe)
    except OSError as error:
        reason = error.strerror or str(error)
        raise UsageError(
            f"Cannot write to --{flag}: '{existing}' is not writable "
            f"({reason}). Received: --{flag}={path}") from None


def model_card(config, info, commit):
    """The `ModelCard` of a run on the data set ``info``."""
    return artifacts.ModelCard(
        dataset=config.dataset, data_dir=config.data_dir,
        data_seed=config.data_seed,
        image_size=list(config.image_size) if config.image_size else None,
        max_test_examples=config.max_test_examples,
        input_shape=list(info.input_shape), num_classes=int(info.num_classes),
        class_names=[str(c) for c in info.class_names], method=config.method,
        eps=config.eps, step_size=config.step_size, model=config.model,
        seed=config.seed, commit=commit, created=artifacts.now())


def start_run_dir(run_dir, flags_text, card):
    """Starts the run in its folder, which the caller has locked: checks it
    again (another process may have changed it since `check_run_dir`),
    clears it under ``overwrite``, then, on the chief, records the settings
    and writes the replayable flagfile with the git commit and the model
    card."""
    check_contents(run_dir.root, run_dir.config)
    if run_dir.config.overwrite:
        for name in artifacts.TRAINING_OUTPUTS:
            path = run_dir.folder.join(name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.remove(path)
    os.makedirs(run_dir.path, exist_ok=True)
    if not run_dir.is_chief:
        return
    artifacts.write_json(run_dir.folder.config,
                         {"config": record(run_dir.config),
                          "commit": card.commit, "started": artifacts.now()})
    if flags_text is not None:
        artifacts.atomic_write_text(
            run_dir.folder.flags, f"# git commit: {card.commit}\n{flags_text}")
    if os.path.isfile(run_dir.folder.card):
        # A resumed run keeps the card's creation time.
        card.created = artifacts.read_model_card(run_dir.path).created
    artifacts.write_model_card(run_dir.path, card)


def save_models(run_dir, classifier, model):
    """Saves the final classifier and training model; a non-chief task
    keeps only its classifier (a record of its final weights)."""
    folder = run_dir.folder
    artifacts.atomic_save_keras(classifier, folder.classifier)
    artifacts.atomic_save_keras(model, folder.model)
    if not run_dir.is_chief:
        # Temporary copies of the chief's files.
        os.remove(folder.model)
        shutil.rmtree(folder.checkpoints, ignore_errors=True)


def finish_run_dir(run_dir, result, card):
    """Writes the metrics (chief), marks the card finished and drops the
    backup: the run is complete, nothing is left to resume."""
    if run_dir.is_chief:
        artifacts.write_json(run_dir.folder.metrics, result)
        card.finished = artifacts.now()
        artifacts.write_model_card(run_dir.path, card)
    shutil.rmtree(run_dir.folder.backup, ignore_errors=True)
