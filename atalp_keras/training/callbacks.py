"""Callbacks of a training run: the per-epoch log with ``last``/``best``
checkpoints (`RunLog`), backup/resume after a kill, and TensorBoard."""

import importlib.util
import math
import os
import time

import keras
from absl import logging

from atalp_keras import artifacts
from atalp_keras.training.optim import last_step_rate


class RunLog(keras.callbacks.Callback):
    """Per-epoch history (JSON + CSV) and ``last``/``best`` ``.keras``
    checkpoints, consistent across a kill and resume.

    It must come before ``BackupAndRestore`` in the callback list: an epoch is
    logged before it is backed up, and a resumed run first drops the rows of
    epochs the backup does not hold, so every epoch appears exactly once.

    Args:
        run_dir: Folder for ``history.json``, ``history.csv`` and
            ``checkpoints/``.
        monitor: Log key that picks ``best.keras`` (higher is better).
        learning_rate: The optimizer's rate (float or schedule), logged as
            the rate of each epoch's last step.
        save_checkpoints: Write ``checkpoints/{last,best}.keras``.
    """

    def __init__(self, run_dir, monitor, learning_rate, save_checkpoints=True):
        super().__init__()
        self.folder = artifacts.RunFolder(run_dir)
        self.monitor = monitor
        self.learning_rate = learning_rate
        self.save_checkpoints = save_checkpoints
        self.rows = []
        self.resumed_from_epoch = 0
        self._truncated = False
        self._epoch_start = None

    def on_train_begin(self, logs=None):
        path = self.folder.history_json
        self.rows = artifacts.read_json(path) if os.path.isfile(path) else []
        self._truncated = False

    def on_epoch_begin(self, epoch, logs=None):
        if not self._truncated:
            # `epoch` is where fit (re)starts: rows after it were not backed up.
            self.rows = [r for r in self.rows if r["epoch"] <= epoch]
            self.resumed_from_epoch = epoch
            self._truncated = True
        self._epoch_start = time.time()

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch + 1}
        row.update({k: float(v) for k, v in (logs or {}).items()})
        row["learning_rate"] = last_step_rate(self.learning_rate,
                                              self.model.optimizer)
        row["seconds"] = round(time.time() - self._epoch_start, 3)
        improved = self.monitor in row and all(
            row[self.monitor] > r.get(self.monitor, -math.inf)
            for r in self.rows)
        self.rows.append(row)
        if self.save_checkpoints:
            os.makedirs(self.folder.checkpoints, exist_ok=True)
            artifacts.atomic_save_keras(self.model,
                                        self.folder.last_checkpoint)
            if improved:
                artifacts.atomic_save_keras(self.model,
                                            self.folder.best_checkpoint)
        self._write()

    def _write(self):
        artifacts.write_json(self.folder.history_json, self.rows)
        keys = list(dict.fromkeys(k for r in self.rows for k in r))
        lines = [",".join(keys)] + [
            ",".join("" if r.get(k) is None else repr(r[k]) for k in keys)
            for r in self.rows]
        artifacts.atomic_write_text(self.folder.history_csv,
                                    "\n".join(lines) + "\n")


def make_callbacks(run_dir, monitor, learning_rate, is_chief):
    """``(callbacks, run_log, tensorboard_note)`` of a run.

    Every worker logs and backs up (others into their own folder): saving
    reads synced metric variables, a collective op all workers must join.
    Only the chief writes TensorBoard logs; without the tensorboard package
    (tensorflow-cpu does not depend on it) the note says so.
    """
    folder = artifacts.RunFolder(run_dir)
    run_log = RunLog(run_dir, monitor, learning_rate)
    backup = keras.callbacks.BackupAndRestore(
        folder.backup, save_freq="epoch", double_checkpoint=True,
        delete_checkpoint=False)
    callbacks = [run_log, backup]  # RunLog first: see its docstring.
    note = None
    if is_chief and importlib.util.find_spec("tensorboard"):
        callbacks.append(keras.callbacks.TensorBoard(
            folder.logs, write_graph=False, profile_batch=0))
    elif is_chief:
        note = ("no TensorBoard logs: the tensorboard package is not "
                "installed (pip install tensorboard)")
        logging.warning(note)
    return callbacks, run_log, note
