"""The run folder of a training run (``model_dir``): checked before anything
expensive, started (flagfile, model card) once everything else is checked,
finished (models, metrics, card update) at the end.

File names come from `atalp_keras.artifacts`. This is the place for checks
on a run folder's integrity (what a resumed run may reuse).
"""

import dataclasses
import os
import shutil

from atalp_keras import artifacts
from atalp_keras.errors import UsageError


@dataclasses.dataclass
class RunDir:
    """Where this task writes (``folder``) and whether ``model_dir`` holds a
    finished run that ``overwrite`` lets it replace."""

    folder: artifacts.RunFolder
    finished: bool
    is_chief: bool

    @property
    def path(self):
        return self.folder.path


def check_run_dir(config, cluster):
    """Checks the output folders before anything expensive runs.

    Raises:
        UsageError: If ``model_dir`` or an export folder is a file, or
            ``model_dir`` holds a finished run and ``overwrite`` is off.
    """
    model_dir = config.model_dir
    if os.path.exists(model_dir) and not os.path.isdir(model_dir):
        raise UsageError(f"`model_dir` is a file, not a folder. Received: "
                         f"model_dir={model_dir!r}")
    if config.export:
        for path in (config.export_dir,
                     os.path.join(config.export_dir, config.export_name or "")):
            if os.path.exists(path) and not os.path.isdir(path):
                raise UsageError(
                    f"The export folder '{path}' is a file; it must be a "
                    f"folder of numbered versions. Received: "
                    f"export_dir={config.export_dir!r}")
    folder = artifacts.RunFolder(model_dir)
    if not cluster.is_chief:
        return RunDir(folder.worker(cluster.task), False, False)
    if folder.finished and not config.overwrite:
        raise UsageError(
            f"'{model_dir}' holds a finished run ({artifacts.METRICS_FILE} "
            f"exists). Use another --model_dir, or --overwrite to start over."
            f" Received: model_dir={model_dir!r}")
    return RunDir(folder, folder.finished, True)


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
    """Creates the folder (clearing a finished run's files when allowed),
    then, on the chief, writes the replayable flagfile with the git commit
    and the model card."""
    if run_dir.finished:
        for name in artifacts.TRAINING_OUTPUTS:
            path = run_dir.folder.join(name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.remove(path)
    os.makedirs(run_dir.path, exist_ok=True)
    if not run_dir.is_chief:
        return
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
