"""Training runs: a `TrainConfig` in, a trained, checkpointed, exported model
out (`train`). One module per job:

- `config`: `TrainConfig`, each setting declared once, and its validation;
- `distribute`: strategy, multi-worker cluster, logical CPU devices;
- `pipelines`: the data subsets and tf.data pipelines of a run;
- `classifier`: the backbone (or a user's ``.keras`` model) to train;
- `optim`: optimiser, learning-rate schedules, weight decay;
- `callbacks`: per-epoch log and checkpoints, backup/resume, TensorBoard;
- `run_folder`: the run folder's checks, flagfile, model card and outputs;
- `exporting`: the SavedModel export;
- `loop`: `train`, the steps in order.
"""

from atalp_keras import data  # noqa: F401  (kept: tests patch training.data)
from atalp_keras.artifacts import (BACKUP_DIR, CARD_FILE, CHECKPOINT_DIR,
                                   CLASSIFIER_FILE, FLAGS_FILE, HISTORY_CSV,
                                   HISTORY_JSON, LOG_DIR, METRICS_FILE,
                                   MODEL_FILE, WORKERS_DIR, git_commit)
from atalp_keras.errors import UsageError
from atalp_keras.training.callbacks import RunLog
from atalp_keras.training.config import (AUGMENTATIONS, DISTRIBUTIONS,
                                         LR_SCHEDULES, OPTIMIZERS, PRECISIONS,
                                         WEIGHTS, TrainConfig, model_names)
from atalp_keras.training.distribute import configure_cpu_devices
from atalp_keras.training.loop import train
from atalp_keras.training.optim import add_weight_decay
from atalp_keras.data import take_subset

ConfigError = UsageError  # The name this module used before errors.py.
_subset = take_subset  # The name experiments/reproduce.py uses.


def __getattr__(name):
    # MODEL_NAMES comes from the backbone registry, on first use.
    if name == "MODEL_NAMES":
        return model_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
