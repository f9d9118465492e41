"""The run folder: every file a training run writes, named once, and its
model card.

Training writes into a run folder (``--model_dir``); evaluation and the
analyses read from it. This module is that contract: the file names, a
`RunFolder` that turns them into paths, the `ModelCard` (what a reader needs
to rebuild the exact data and threat model: dataset, split seed, image size,
eps, method, classes, commit) and small atomic writers, so a killed process
never leaves a half-written file behind.

Nothing here imports TensorFlow.
"""

import dataclasses
import datetime
import json
import os
import subprocess
from typing import Optional

CLASSIFIER_FILE = "classifier.keras"
MODEL_FILE = "model.keras"
METRICS_FILE = "metrics.json"
FLAGS_FILE = "flags.txt"
CARD_FILE = "model_card.json"
CONFIG_FILE = "run_config.json"
LOCK_FILE = "run.lock"
HISTORY_JSON = "history.json"
HISTORY_CSV = "history.csv"
BACKUP_DIR = "backup"
CHECKPOINT_DIR = "checkpoints"
LOG_DIR = "logs"
WORKERS_DIR = "workers"
EVAL_DIR = "eval"
LAST_CHECKPOINT = "last.keras"
BEST_CHECKPOINT = "best.keras"

# What ``--overwrite`` clears before a run starts over (exports, which live
# elsewhere, and the other workers' folders stay). The default evaluation
# folder goes too: its results describe the weights being replaced.
TRAINING_OUTPUTS = (FLAGS_FILE, CARD_FILE, CONFIG_FILE, CLASSIFIER_FILE,
                    MODEL_FILE, METRICS_FILE, HISTORY_JSON, HISTORY_CSV,
                    BACKUP_DIR, CHECKPOINT_DIR, LOG_DIR, EVAL_DIR)


class RunFolder:
    """Paths of the files of one run folder (nothing is created here).

    Args:
        path: The folder (``--model_dir``).
    """

    def __init__(self, path):
        self.path = os.fspath(path)

    def __repr__(self):
        return f"RunFolder({self.path!r})"

    def join(self, *names):
        return os.path.join(self.path, *names)

    classifier = property(lambda self: self.join(CLASSIFIER_FILE))
    model = property(lambda self: self.join(MODEL_FILE))
    metrics = property(lambda self: self.join(METRICS_FILE))
    flags = property(lambda self: self.join(FLAGS_FILE))
    card = property(lambda self: self.join(CARD_FILE))
    config = property(lambda self: self.join(CONFIG_FILE))
    lock = property(lambda self: self.join(LOCK_FILE))
    history_json = property(lambda self: self.join(HISTORY_JSON))
    history_csv = property(lambda self: self.join(HISTORY_CSV))
    backup = property(lambda self: self.join(BACKUP_DIR))
    checkpoints = property(lambda self: self.join(CHECKPOINT_DIR))
    last_checkpoint = property(
        lambda self: self.join(CHECKPOINT_DIR, LAST_CHECKPOINT))
    best_checkpoint = property(
        lambda self: self.join(CHECKPOINT_DIR, BEST_CHECKPOINT))
    logs = property(lambda self: self.join(LOG_DIR))
    workers = property(lambda self: self.join(WORKERS_DIR))
    eval = property(lambda self: self.join(EVAL_DIR))

    def worker(self, task):
        """The folder of a non-chief multi-worker task (``worker_1``, ...)."""
        return RunFolder(self.join(WORKERS_DIR, task))

    @property
    def finished(self):
        """Whether a training run completed here (its metrics exist)."""
        return os.path.isfile(self.metrics)


@dataclasses.dataclass
class ModelCard:
    """What a trained model was trained on and against, for its readers.

    ``data_seed`` and ``max_test_examples`` rebuild the exact test split;
    ``eps``/``step_size``/``method`` the training threat model; ``commit``
    the code. ``finished`` is None while the run is in progress.
    """

    dataset: str
    data_dir: Optional[str] = None
    data_seed: int = 0
    image_size: Optional[list] = None
    max_test_examples: int = 0
    input_shape: Optional[list] = None
    num_classes: Optional[int] = None
    class_names: Optional[list] = None
    method: Optional[str] = None
    eps: Optional[float] = None
    step_size: Optional[float] = None
    model: Optional[str] = None
    seed: int = 0
    commit: str = "unknown"
    created: Optional[str] = None
    finished: Optional[str] = None

    @classmethod
    def from_dict(cls, values):
        """A card from a dict; keys this version does not know are ignored."""
        names = {field.name for field in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


def now():
    """The current UTC time as an ISO-8601 string (seconds)."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec="seconds")


def write_model_card(run_dir, card):
    """Writes ``card`` to ``<run_dir>/model_card.json`` (atomically)."""
    write_json(RunFolder(run_dir).card, dataclasses.asdict(card))


def read_model_card(run_dir):
    """The `ModelCard` of ``run_dir``, or None if it has none.

    A folder written before model cards existed has its card rebuilt from
    ``metrics.json`` (its ``created`` is then None).
    """
    folder = RunFolder(run_dir)
    if os.path.isfile(folder.card):
        return ModelCard.from_dict(read_json(folder.card))
    if not os.path.isfile(folder.metrics):
        return None
    metrics = read_json(folder.metrics)
    config, dataset = metrics.get("config", {}), metrics.get("dataset", {})
    return ModelCard(
        dataset=config.get("dataset", dataset.get("spec")),
        data_dir=config.get("data_dir"), data_seed=config.get("data_seed", 0),
        image_size=config.get("image_size"),
        max_test_examples=config.get("max_test_examples", 0),
        input_shape=dataset.get("input_shape"),
        num_classes=dataset.get("num_classes"),
        class_names=dataset.get("class_names"), method=config.get("method"),
        eps=config.get("eps"), step_size=config.get("step_size"),
        model=config.get("model"), seed=config.get("seed", 0),
        commit=metrics.get("git_commit", "unknown"))


def git_commit(path=None):
    """The ``git rev-parse HEAD`` of the repository holding ``path`` (default:
    this package), or ``"unknown"``. The one place the commit is read."""
    path = path or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        result = subprocess.run(["git", "-C", path, "rev-parse", "HEAD"],
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = result.stdout.strip()
    return commit if result.returncode == 0 and commit else "unknown"


def to_python(value):
    """Numpy / TensorFlow scalars and arrays -> JSON-able Python values."""
    if isinstance(value, dict):
        return {str(k): to_python(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_python(v) for v in value]
    if hasattr(value, "numpy"):
        value = value.numpy()
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return value.tolist()
    return value


def atomic_write_text(path, text):
    """Writes ``text`` to ``path`` through a temporary file and a rename."""
    path = os.fspath(path)
    temp = f"{path}.tmp-{os.getpid()}"
    with open(temp, "w") as handle:
        handle.write(text)
    os.replace(temp, path)


def atomic_save_keras(model, path):
    """``model.save(path)`` through a temporary ``.keras`` file and a rename."""
    path = os.fspath(path)
    temp = f"{path[:-len('.keras')]}.tmp-{os.getpid()}.keras"
    model.save(temp)
    os.replace(temp, path)


def write_json(path, obj):
    """Writes ``obj`` (numpy values converted) as indented JSON, atomically."""
    atomic_write_text(path, json.dumps(to_python(obj), indent=2))


def read_json(path):
    with open(path) as handle:
        return json.load(handle)
