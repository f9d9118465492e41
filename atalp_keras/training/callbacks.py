"""Callbacks of a training run: the per-epoch log with ``last``/``best``
checkpoints (`RunLog`), backup/resume after a kill, TensorBoard, and the
optional early stop against catastrophic overfitting (`OverfitGuard`)."""

import importlib.util
import math
import os
import re
import time

import keras
import numpy as np
from absl import logging

from atalp_keras import artifacts
from atalp_keras.attacks.batching import predict_classes
from atalp_keras.training.optim import last_step_rate


# An improving epoch's checkpoint before its backup is written (RunLog): the
# name, and the pattern that reads the epoch back from it.
_PENDING_BEST = "best.pending-epoch{}.keras"
_PENDING_BEST_NAME = re.compile(re.escape(_PENDING_BEST).replace(r"\{\}", r"(\d+)"))


class RunLog(keras.callbacks.Callback):
    """Per-epoch history (JSON + CSV) and ``last``/``best`` ``.keras``
    checkpoints, consistent across a kill and resume.

    It must come before ``BackupAndRestore`` in the callback list: an epoch is
    logged before it is backed up, and a resumed run first drops the rows of
    epochs the backup does not hold, so every epoch appears exactly once.
    ``best.keras`` only ever holds an epoch the backup holds: an improving
    epoch is saved as ``best.pending-epoch<N>.keras`` and renamed to
    ``best.keras`` when the next epoch begins (its backup written) or
    training ends; a kill before that backup leaves a pending file that the
    resumed run discards with the epoch's row, so ``best.keras`` never holds
    weights no row of the history describes.

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
        self._settle_best(epoch)
        self._epoch_start = time.time()

    def on_train_end(self, logs=None):
        if self.rows:
            self._settle_best(self.rows[-1]["epoch"])

    def _pending_best(self):
        """``{epoch: path}`` of the improving epochs saved but not yet backed up."""
        folder = self.folder.checkpoints
        names = os.listdir(folder) if os.path.isdir(folder) else []
        found = (_PENDING_BEST_NAME.fullmatch(name) for name in names)
        return {int(m.group(1)): os.path.join(folder, m.group(0)) for m in found if m}

    def _settle_best(self, backed_up):
        """Makes the newest pending best of an epoch <= ``backed_up`` (the
        epochs the backup holds) ``best.keras``; deletes the others."""
        pending = self._pending_best()
        kept = max((e for e in pending if e <= backed_up), default=None)
        for epoch, path in pending.items():
            if epoch == kept:
                os.replace(path, self.folder.best_checkpoint)
            else:
                os.remove(path)

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
                # best.keras once this epoch is backed up (_settle_best).
                artifacts.atomic_save_keras(self.model, os.path.join(
                    self.folder.checkpoints, _PENDING_BEST.format(epoch + 1)))
        self._write()

    def _write(self):
        artifacts.write_json(self.folder.history_json, self.rows)
        keys = list(dict.fromkeys(k for r in self.rows for k in r))
        lines = [",".join(keys)] + [
            ",".join("" if r.get(k) is None else repr(r[k]) for k in keys)
            for r in self.rows]
        artifacts.atomic_write_text(self.folder.history_csv,
                                    "\n".join(lines) + "\n")


class OverfitGuard(keras.callbacks.Callback):
    """Stops a run whose PGD accuracy on fixed training images collapses,
    and keeps the weights of its best epoch: the early stop of Wong et al.
    (2020, "Fast is better than free") against the catastrophic overfitting
    of single-step (``fast``) training, where FGSM accuracy climbs toward
    clean accuracy while PGD accuracy falls to near zero within an epoch.

    After every epoch it attacks ``(x, y)`` with ``attack`` and logs the
    accuracy as ``guard_pgd_accuracy``. When that is more than ``max_drop``
    below the best epoch so far, it restores the best epoch's weights and
    stops training. It must come before `RunLog` in the callback list, so
    the logged row and the ``last`` checkpoint see what it did. The best
    weights live in memory: after a resume it compares with the epochs
    since the resume only.

    Args:
        classifier: The logits model the attack runs on (its weights are
            the trained model's).
        x, y: The fixed training images and labels.
        attack: An `Attack` (PGD-10 at the training eps in `train.py`).
        max_drop: Largest tolerated fall of the accuracy, in [0, 1].
    """

    def __init__(self, classifier, x, y, attack, max_drop, batch_size=256):
        super().__init__()
        self.classifier, self.x, self.y = classifier, x, y
        self.attack, self.max_drop, self.batch_size = attack, float(max_drop), batch_size
        self._reset()

    def _reset(self):
        self.best, self.best_epoch, self.stopped_epoch = -math.inf, None, None
        self._best_weights = None

    def on_train_begin(self, logs=None):
        self._reset()

    def on_epoch_end(self, epoch, logs=None):
        x_adv = self.attack.perturb(self.classifier, self.x, self.y, self.batch_size)
        accuracy = float(np.mean(predict_classes(self.classifier, x_adv, self.batch_size)
                                 == self.y))
        if logs is not None:
            logs["guard_pgd_accuracy"] = accuracy
        if accuracy > self.best:
            self.best, self.best_epoch = accuracy, epoch + 1
            self._best_weights = self.model.get_weights()
        elif self.best - accuracy > self.max_drop:
            self.model.set_weights(self._best_weights)
            self.model.stop_training = True
            self.stopped_epoch = epoch + 1
            logging.warning(
                "Overfit guard: PGD accuracy on %d training images fell from %.3f (epoch "
                "%d) to %.3f (epoch %d), more than %.2f: catastrophic overfitting. "
                "Training stops here with the weights of epoch %d.", len(self.y), self.best,
                self.best_epoch, accuracy, epoch + 1, self.max_drop, self.best_epoch)

    def summary(self):
        """What the run's record says about the guard."""
        return {"max_drop": self.max_drop, "examples": int(len(self.y)),
                "attack": artifacts.to_python(self.attack.describe()),
                "stopped_at_epoch": self.stopped_epoch,
                "weights_of_epoch": self.best_epoch if self.stopped_epoch else None,
                "best_accuracy": None if self.best_epoch is None else self.best}


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
