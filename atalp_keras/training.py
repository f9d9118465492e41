"""Training runs: a `TrainConfig` in, a trained, checkpointed, exported model out.

This is the library side of ``train.py``: no flags are read here. One call of
`train` does a whole run::

    config -> strategy -> data pipelines -> classifier -> ATALPModel.compile
           -> fit (backup/resume, TensorBoard, per-epoch .keras, history)
           -> final test evaluation -> classifier.keras, model.keras,
              metrics.json -> SavedModel export (export_dir/<name>/<version>/)

Weight decay is the classic coupled L2 penalty (what ``torch.optim.SGD(...,
weight_decay=wd)`` in the paper's reference code does): ``wd / 2 * ||W||^2`` is
added to the loss for every convolution and dense kernel (not biases, not
BatchNorm), so each kernel's gradient gains ``wd * W`` and the decay passes
through the momentum like the rest of the gradient. It is attached to the
kernels of any classifier (built-in backbones, ``keras.applications``
ResNets, a user's ``.keras`` model), replacing regularizers already there.

Under a distribution strategy ``batch_size`` is the global batch; each of the
``R`` replicas gets ``batch_size / R`` examples, and the loss scaling of
``ATALPModel`` keeps gradients equal to the single-device ones. Only the chief
writes into ``model_dir``; other multi-worker tasks write their backups into
``model_dir/workers/<task_type>_<index>/`` so files never clash.

An existing export version is never overwritten: a run exports the next free
version (``1``, ``2``, ...) unless ``export_version`` names one, which must be
free.
"""

import dataclasses
import importlib.util
import json
import math
import os
import shutil
import subprocess
import time
from typing import Optional

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from atalp_keras import backbones, data, export, methods
from atalp_keras.attacks.base import check_eps
from atalp_keras.attacks.pgd import PGDAttack
from atalp_keras.errors import UsageError
from atalp_keras.model import ATALPModel

MODEL_NAMES = backbones.names()
OPTIMIZERS = ("sgd", "adam")
LR_SCHEDULES = ("constant", "piecewise", "cosine")
AUGMENTATIONS = ("none", "crop", "crop_flip")
PRECISIONS = ("none", "mixed_float16", "mixed_bfloat16")
DISTRIBUTIONS = ("default", "one_device", "mirrored", "multi_worker")
WEIGHTS = ("none", "imagenet")

# Files of a run inside model_dir.
FLAGS_FILE = "flags.txt"
CLASSIFIER_FILE = "classifier.keras"
MODEL_FILE = "model.keras"
METRICS_FILE = "metrics.json"
HISTORY_JSON = "history.json"
HISTORY_CSV = "history.csv"
BACKUP_DIR = "backup"
CHECKPOINT_DIR = "checkpoints"
LOG_DIR = "logs"
WORKERS_DIR = "workers"
_RUN_OUTPUTS = (FLAGS_FILE, CLASSIFIER_FILE, MODEL_FILE, METRICS_FILE,
                HISTORY_JSON, HISTORY_CSV, BACKUP_DIR, CHECKPOINT_DIR, LOG_DIR)


ConfigError = UsageError  # The name training used before errors.py.


@dataclasses.dataclass
class TrainConfig:
    """Every setting of a training run.

    Attributes:
        dataset: Data source: ``digits``, ``tfds:<name>[:split]``,
            ``folder:<path>`` or ``idx:<path>`` (see `data.load_dataset`).
        data_dir: TFDS data folder (``tfds:`` only); None = TFDS default.
        image_size: ``(H, W)`` to resize images to; None keeps their size.
        data_seed: Seed of the train/test split of ``digits`` and ``folder:``
            sources. Kept apart from ``seed`` so models trained with different
            seeds share one test set (needed for gray-box transfer).
        max_train_examples: Use at most this many training examples (a fixed,
            seeded random subset); 0 = all.
        max_test_examples: Same for the test set; 0 = all.
        augment: ``none``, ``crop`` (random shift by zero-padding and
            cropping) or ``crop_flip`` (shift plus horizontal flip, CIFAR).
        model: ``tiny``, ``cnn`` (plain CNN, a black-box source), ``resnet18``,
            ``resnet34``, ``resnet50``,
            ``resnet101``, ``resnet152``, or a path to a ``.keras`` file with a
            functional logits classifier (or a saved ``ATALPModel``).
        stage_layers: Names of the layers whose attention maps are paired;
            empty = the ResNet stage ends ``conv{2..5}_block{N}_out``.
        tiny_widths: Filters per stage of the ``tiny`` model (4 ints).
        weights: ``none`` (random init) or ``imagenet`` (resnet50/101/152
            only; downloads the weights once, needs network access).
        method: Training preset: ``standard``, ``pat``, ``alp``, ``at``,
            ``at_alp``, ``trades``, ``fast`` (METHOD.md).
        eps: L-inf radius of the training attack on the [0, 1] pixel scale.
        step_size: Step of the training attack; None = ``eps / 4``.
        num_steps: Steps of the training attack; None = the preset's (7;
            TRADES 10). ``fast`` always takes one step of ``1.25 * eps``.
        natural_weight, adv_weight, alp_weight, at_weight, trades_beta:
            Override the preset's weight of that loss term; None keeps it.
        eval_pgd_steps: Steps of the PGD attack (at ``eps``, ``step_size``)
            that reports ``adv_accuracy`` on the test set after every epoch
            and at the end; 0 = clean accuracy only.
        epochs: Number of passes over the training set.
        steps_per_epoch: Batches per epoch; 0 = ``ceil(num_train /
            batch_size)`` (one pass).
        batch_size: Global batch size (summed over all replicas).
        optimizer: ``sgd`` (with ``momentum``) or ``adam``.
        learning_rate: Initial learning rate.
        momentum: SGD momentum.
        nesterov: Nesterov momentum for SGD.
        lr_schedule: ``constant``; ``piecewise`` (multiply by ``lr_decay`` at
            each epoch in ``lr_boundaries``); ``cosine`` (to 0 at the end).
        lr_boundaries: Epochs at which ``piecewise`` decays the rate.
        lr_decay: Factor of each ``piecewise`` decay.
        weight_decay: Coupled L2 factor on all kernels (see module docs).
        seed: Seed of the weights, shuffling, augmentation and attacks.
        model_dir: Folder of the run's files; an interrupted run with the same
            ``model_dir`` resumes from its last finished epoch.
        overwrite: Allow starting over in a ``model_dir`` that holds a
            finished run (its run files are deleted first).
        export: Write the SavedModel at the end.
        export_dir: Folder of exported models (``<export_dir>/<name>/<n>/``).
        export_name: Model name under ``export_dir``; empty =
            ``<dataset>_<model>_<method>``.
        export_version: Version to write; 0 = the next free one.
        jit_compile: XLA-compile the train and test steps.
        mixed_precision: ``none``, ``mixed_float16`` (with dynamic loss
            scaling) or ``mixed_bfloat16``.
        distribution: ``default`` (no strategy), ``one_device``, ``mirrored``
            (all local GPUs, or ``devices``) or ``multi_worker``
            (``MultiWorkerMirroredStrategy`` configured by ``TF_CONFIG``).
        devices: Devices for ``one_device`` / ``mirrored``, e.g.
            ``("/gpu:0", "/gpu:1")``; empty = all GPUs (else all CPUs).
        steps_per_execution: Batches run per compiled call (fewer Python
            round trips; logs update every that many batches).
        verbose: Keras ``fit`` verbosity: 0 silent, 1 progress bar, 2 one
            line per epoch.
        flags_text: Replayable flagfile written to ``model_dir/flags.txt``
            (set by ``train.py``); None writes no flagfile.
    """

    dataset: str = "digits"
    data_dir: Optional[str] = None
    image_size: Optional[tuple] = None
    data_seed: int = 0
    max_train_examples: int = 0
    max_test_examples: int = 0
    augment: str = "none"
    model: str = "tiny"
    stage_layers: tuple = ()
    tiny_widths: tuple = (8, 16, 16, 32)
    weights: str = "none"
    method: str = "at_alp"
    eps: float = 8 / 255
    step_size: Optional[float] = None
    num_steps: Optional[int] = None
    natural_weight: Optional[float] = None
    adv_weight: Optional[float] = None
    alp_weight: Optional[float] = None
    at_weight: Optional[float] = None
    trades_beta: Optional[float] = None
    eval_pgd_steps: int = 10
    epochs: int = 10
    steps_per_epoch: int = 0
    batch_size: int = 128
    optimizer: str = "sgd"
    learning_rate: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    lr_schedule: str = "constant"
    lr_boundaries: tuple = ()
    lr_decay: float = 0.1
    weight_decay: float = 0.0
    seed: int = 0
    model_dir: str = "runs/default"
    overwrite: bool = False
    export: bool = True
    export_dir: str = "saved_models"
    export_name: str = ""
    export_version: int = 0
    jit_compile: bool = False
    mixed_precision: str = "none"
    distribution: str = "default"
    devices: tuple = ()
    steps_per_execution: int = 1
    verbose: int = 1
    flags_text: Optional[str] = None

    def validate(self):
        """Checks every setting; returns a normalised copy.

        Raises:
            ConfigError: naming the first bad setting and its value.
        """
        c = dataclasses.replace(self)
        _check_choice(c, "augment", AUGMENTATIONS)
        _check_choice(c, "weights", WEIGHTS)
        _check_choice(c, "optimizer", OPTIMIZERS)
        _check_choice(c, "lr_schedule", LR_SCHEDULES)
        _check_choice(c, "mixed_precision", PRECISIONS)
        _check_choice(c, "distribution", DISTRIBUTIONS)
        if c.method not in methods.METHODS:
            raise ConfigError(
                f"Unknown method {c.method!r}. Expected one of: "
                f"{', '.join(methods.METHODS)}. Received: method={c.method!r}")
        if not isinstance(c.dataset, str) or not c.dataset.strip():
            raise ConfigError(f"`dataset` must be a non-empty string. "
                              f"Received: dataset={c.dataset!r}")
        if not isinstance(c.model, str) or not c.model:
            raise ConfigError(f"`model` must be a name or a .keras path. "
                              f"Received: model={c.model!r}")
        if c.model not in MODEL_NAMES:
            if not c.model.endswith(".keras"):
                raise ConfigError(
                    f"Unknown model {c.model!r}. Expected one of: "
                    f"{', '.join(MODEL_NAMES)}, or a path to a .keras file. "
                    f"Received: model={c.model!r}")
            if not os.path.isfile(c.model):
                raise ConfigError(f"No .keras file at this path. Received: "
                                  f"model={c.model!r}")
        if c.weights == "imagenet" and c.model not in (
                "resnet50", "resnet101", "resnet152"):
            raise ConfigError(
                "ImageNet weights exist only for resnet50/101/152. Received: "
                f"weights='imagenet', model={c.model!r}")
        c.image_size = _normalise_image_size(c.image_size)
        c.stage_layers = tuple(str(s) for s in (c.stage_layers or ()) if s)
        c.tiny_widths = tuple(c.tiny_widths)
        if len(c.tiny_widths) != 4 or not all(
                _is_int(w) and w >= 1 for w in c.tiny_widths):
            raise ConfigError(f"`tiny_widths` must be 4 positive integers "
                              f"(filters per stage). Received: "
                              f"tiny_widths={c.tiny_widths!r}")
        c.tiny_widths = tuple(int(w) for w in c.tiny_widths)
        try:
            c.eps = check_eps(c.eps, "eps")
            c.step_size = (c.eps / 4 if c.step_size is None
                           else check_eps(c.step_size, "step_size"))
        except ValueError as error:
            raise ConfigError(str(error)) from None
        if c.num_steps is None:
            c.num_steps = 10 if c.method == "trades" else 7
        for name, low in (("num_steps", 1), ("epochs", 1), ("batch_size", 1),
                          ("steps_per_execution", 1), ("eval_pgd_steps", 0),
                          ("steps_per_epoch", 0), ("max_train_examples", 0),
                          ("max_test_examples", 0), ("export_version", 0),
                          ("data_seed", 0), ("seed", 0)):
            _check_int(c, name, low)
        for name in ("natural_weight", "adv_weight", "alp_weight",
                     "at_weight", "trades_beta"):
            value = getattr(c, name)
            if value is not None:
                _check_float(c, name, low=0.0)
        _check_float(c, "learning_rate", low=0.0, low_open=True)
        _check_float(c, "momentum", low=0.0, high=1.0, high_open=True)
        _check_float(c, "lr_decay", low=0.0, high=1.0, low_open=True)
        _check_float(c, "weight_decay", low=0.0)
        c.lr_boundaries = tuple(c.lr_boundaries or ())
        if c.lr_schedule == "piecewise":
            if not c.lr_boundaries:
                raise ConfigError(
                    "lr_schedule='piecewise' needs lr_boundaries (epochs at "
                    "which the rate decays), e.g. (75, 90). Received: "
                    "lr_boundaries=()")
            bounds = c.lr_boundaries
            if not all(_is_number(b) and b > 0 for b in bounds) \
                    or list(bounds) != sorted(set(bounds)):
                raise ConfigError(
                    "`lr_boundaries` must be increasing epochs > 0. Received: "
                    f"lr_boundaries={bounds!r}")
            if bounds[-1] >= c.epochs:
                # Allowed (a short trial of a long config), but worth a word.
                logging.warning("lr_boundaries %s reach past the last epoch "
                                "(%d): those decays never happen.",
                                list(bounds), c.epochs)
        elif c.lr_boundaries:
            raise ConfigError(
                f"`lr_boundaries` applies to lr_schedule='piecewise' only. "
                f"Received: lr_schedule={c.lr_schedule!r}, "
                f"lr_boundaries={c.lr_boundaries!r}")
        c.devices = tuple(str(d) for d in (c.devices or ()) if d)
        if c.devices and c.distribution not in ("one_device", "mirrored"):
            raise ConfigError(
                "`devices` applies to distribution 'one_device' or 'mirrored'. "
                f"Received: distribution={c.distribution!r}, "
                f"devices={c.devices!r}")
        if c.distribution == "one_device" and len(c.devices) > 1:
            raise ConfigError(f"distribution='one_device' takes one device. "
                              f"Received: devices={c.devices!r}")
        if not c.model_dir:
            raise ConfigError("`model_dir` must be a folder path. Received: "
                              "model_dir=''")
        if c.export_name and (os.sep in c.export_name
                              or c.export_name in (".", "..")):
            raise ConfigError(f"`export_name` must be a plain folder name. "
                              f"Received: export_name={c.export_name!r}")
        if c.verbose not in (0, 1, 2):
            raise ConfigError(f"`verbose` must be 0, 1 or 2. Received: "
                              f"verbose={c.verbose!r}")
        return c


# ------------------------------------------------------------------ helpers


def _check_choice(config, name, choices):
    value = getattr(config, name)
    if value not in choices:
        raise ConfigError(f"Unknown {name} {value!r}. Expected one of: "
                          f"{', '.join(choices)}. Received: {name}={value!r}")


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value):
    return (isinstance(value, (int, float, np.integer, np.floating))
            and not isinstance(value, bool) and math.isfinite(value))


def _check_int(config, name, low):
    value = getattr(config, name)
    if not _is_int(value) or value < low:
        raise ConfigError(f"`{name}` must be an integer >= {low}. Received: "
                          f"{name}={value!r}")
    setattr(config, name, int(value))


def _check_float(config, name, low=None, high=None, low_open=False,
                 high_open=False):
    value = getattr(config, name)
    ok = _is_number(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        interval = f"{left}{low if low is not None else '-inf'}, " \
                   f"{high if high is not None else 'inf'}{right}"
        raise ConfigError(f"`{name}` must be a number in {interval}. "
                          f"Received: {name}={value!r}")
    setattr(config, name, float(value))


def _normalise_image_size(image_size):
    if image_size is None or image_size == () or image_size == 0:
        return None
    if _is_int(image_size):
        image_size = (image_size, image_size)
    size = tuple(image_size)
    if len(size) == 1:
        size = (size[0], size[0])
    if len(size) != 2 or not all(_is_int(d) and d >= 1 for d in size):
        raise ConfigError(f"`image_size` must be one or two positive integers "
                          f"(H, W). Received: image_size={image_size!r}")
    return tuple(int(d) for d in size)


def git_commit(path=None):
    """The ``git rev-parse HEAD`` of the repository holding ``path`` (default:
    this package), or ``"unknown"``."""
    path = path or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        result = subprocess.run(["git", "-C", path, "rev-parse", "HEAD"],
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = result.stdout.strip()
    return commit if result.returncode == 0 and commit else "unknown"


def configure_cpu_devices(count):
    """Splits the CPU into ``count`` logical devices (``/cpu:0`` ...).

    Lets ``mirrored`` run with several replicas on a machine without GPUs, for
    testing. Must run before TensorFlow executes its first op.

    Raises:
        ConfigError: If ``count < 1`` or TensorFlow is already initialised.
    """
    if not _is_int(count) or count < 1:
        raise ConfigError(f"The number of CPU devices must be an integer >= 1."
                          f" Received: {count!r}")
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError as error:
        raise ConfigError(
            f"Cannot split the CPU into {count} devices after TensorFlow has "
            f"started ({error}); set it before any other TensorFlow call."
        ) from None


def _atomic_write_text(path, text):
    temp = f"{path}.tmp-{os.getpid()}"
    with open(temp, "w") as handle:
        handle.write(text)
    os.replace(temp, path)


def _atomic_save_keras(model, path):
    temp = f"{path[:-len('.keras')]}.tmp-{os.getpid()}.keras"
    model.save(temp)
    os.replace(temp, path)


def _to_python(value):
    """Numpy / TF scalars -> JSON-able Python values."""
    if isinstance(value, dict):
        return {str(k): _to_python(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_python(v) for v in value]
    if hasattr(value, "numpy"):
        value = value.numpy()
    if isinstance(value, np.ndarray):
        return value.tolist() if value.ndim else value.item()
    if isinstance(value, np.generic):
        return value.item()
    return value


# --------------------------------------------------------------- strategy


@dataclasses.dataclass
class _Cluster:
    strategy: tf.distribute.Strategy
    is_chief: bool
    task: str  # "chief", "worker_1", ... ("chief" when not multi-worker)
    replicas: int
    cpu_only: bool


def _tf_config():
    text = os.environ.get("TF_CONFIG", "")
    if not text.strip():
        raise ConfigError(
            "distribution='multi_worker' needs the TF_CONFIG environment "
            "variable, e.g. {\"cluster\": {\"worker\": [\"host1:12345\", "
            "\"host2:12345\"]}, \"task\": {\"type\": \"worker\", \"index\": 0}}."
            " Received: TF_CONFIG unset")
    try:
        tf_config = json.loads(text)
        cluster = tf_config["cluster"]
        task = tf_config["task"]
        task_type, index = task["type"], int(task["index"])
        if task_type not in cluster or not 0 <= index < len(
                cluster[task_type]):
            raise KeyError(f"task {task_type}:{index} not in the cluster")
    except (ValueError, KeyError, TypeError) as error:
        raise ConfigError(
            f"TF_CONFIG must be JSON with 'cluster' (task type -> list of "
            f"host:port) and 'task' ({{'type', 'index'}}) ({error}). Received:"
            f" TF_CONFIG={text!r}") from None
    return cluster, task_type, index


def _make_cluster(config):
    gpus = tf.config.list_physical_devices("GPU")
    kind = config.distribution
    is_chief, task = True, "chief"
    if kind == "default":
        strategy = tf.distribute.get_strategy()
    elif kind == "one_device":
        device = config.devices[0] if config.devices else (
            "/gpu:0" if gpus else "/cpu:0")
        strategy = tf.distribute.OneDeviceStrategy(device)
    elif kind == "mirrored":
        devices = list(config.devices)
        if not devices and not gpus:
            # No GPU: all logical CPUs (one unless configure_cpu_devices ran).
            devices = [d.name for d in tf.config.list_logical_devices("CPU")]
        strategy = tf.distribute.MirroredStrategy(devices or None)
    else:
        cluster, task_type, index = _tf_config()
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        is_chief = task_type == "chief" or (
            task_type == "worker" and index == 0 and "chief" not in cluster)
        task = "chief" if is_chief else f"{task_type}_{index}"
    if kind == "default":
        cpu_only = not gpus
    else:
        cpu_only = all("GPU" not in d.upper()
                       for d in strategy.extended.worker_devices)
    return _Cluster(strategy, is_chief, task, strategy.num_replicas_in_sync,
                    cpu_only)


# ------------------------------------------------------------------- data


def _subset(dataset, limit, size, seed):
    """A fixed, seeded random subset of ``limit`` examples (0 = all)."""
    if not limit or limit >= size:
        return dataset, size
    buffer_size = max(1, min(size, 10_000))
    dataset = dataset.shuffle(buffer_size, seed=seed,
                              reshuffle_each_iteration=False)
    return dataset.take(limit), limit


def _distribute_options(dataset):
    # In-memory sources have no files to shard: shard by example (every
    # worker reads the same seeded order and keeps its share).
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA)
    return dataset.with_options(options)


# ------------------------------------------------------------------ model


def _build_classifier(config, info, replicas):
    """The logits classifier and the stage layers to pair."""
    stage_layers = list(config.stage_layers) or None
    if config.model in MODEL_NAMES:
        kwargs = {}
        options = backbones.backbone_options(config.model)
        if config.model in ("tiny", "tiny_deep"):
            kwargs["widths"] = config.tiny_widths
        if "synchronized_bn" in options:
            # Batch statistics over the global batch under a strategy.
            kwargs["synchronized_bn"] = replicas > 1
        if "weights" in options:
            kwargs["weights"] = (None if config.weights == "none"
                                 else config.weights)
        # A failed ImageNet download raises a bare Exception from get_file.
        errors = Exception if config.weights == "imagenet" else (ValueError,
                                                                 OSError)
        try:
            classifier = backbones.build_backbone(
                config.model, info.input_shape, info.num_classes, **kwargs)
        except errors as error:
            raise ConfigError(
                f"Cannot build model {config.model!r} for images of shape "
                f"{info.input_shape} ({type(error).__name__}: "
                f"{str(error).strip().splitlines()[0] if str(error) else ''})"
            ) from None
        return classifier, stage_layers
    loaded = export.load_classifier(config.model)
    if isinstance(loaded, ATALPModel):
        stage_layers = stage_layers or list(loaded.stage_layers)
        loaded = loaded.classifier
    if not isinstance(loaded, keras.Model) or not getattr(
            loaded, "inputs", None):
        raise ConfigError(
            f"{config.model!r} must hold a functional Keras classifier (built "
            f"with keras.Input). Received: {type(loaded).__name__}")
    model_shape = tuple(loaded.inputs[0].shape[1:])
    if model_shape != tuple(info.input_shape):
        raise ConfigError(
            f"The model takes images of shape {model_shape} but the dataset "
            f"has {tuple(info.input_shape)}; pass --image_size or another "
            f"dataset. Received: model={config.model!r}")
    num_classes = int(loaded.outputs[0].shape[-1])
    if num_classes != info.num_classes:
        raise ConfigError(
            f"The model has {num_classes} outputs but the dataset has "
            f"{info.num_classes} classes. Received: model={config.model!r}")
    return loaded, stage_layers


def _kernel_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _kernel_layers(layer)
        else:
            yield layer


def add_weight_decay(classifier, weight_decay):
    """Adds the coupled L2 penalty ``weight_decay / 2 * ||W||^2`` to every
    convolution / dense kernel of ``classifier`` (gradient ``+ wd * W``).

    Returns:
        The number of kernels regularised.
    """
    count = 0
    regularizer = keras.regularizers.L2(weight_decay / 2) \
        if weight_decay > 0 else None
    for layer in _kernel_layers(classifier):
        for attr in ("kernel", "depthwise_kernel", "pointwise_kernel"):
            variable = getattr(layer, attr, None)
            if not isinstance(variable, keras.Variable):
                continue
            variable.regularizer = regularizer
            if hasattr(layer, f"{attr}_regularizer"):
                # Keeps the penalty in the layer config (saved with .keras).
                setattr(layer, f"{attr}_regularizer", regularizer)
            count += 1
    return count


def _learning_rate(config, steps_per_epoch):
    lr = config.learning_rate
    if config.lr_schedule == "constant":
        return lr
    if config.lr_schedule == "piecewise":
        # Keras uses values[i + 1] once `iterations > boundaries[i]`; the
        # first step of epoch E has iterations == E * steps_per_epoch.
        boundaries = [max(0, int(round(b * steps_per_epoch)) - 1)
                      for b in config.lr_boundaries]
        values = [lr * config.lr_decay ** i
                  for i in range(len(boundaries) + 1)]
        return keras.optimizers.schedules.PiecewiseConstantDecay(
            boundaries, values)
    return keras.optimizers.schedules.CosineDecay(
        lr, decay_steps=max(1, config.epochs * steps_per_epoch))


def _optimizer(config, learning_rate):
    if config.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(learning_rate, momentum=config.momentum,
                                         nesterov=config.nesterov)
    else:
        optimizer = keras.optimizers.Adam(learning_rate)
    if config.mixed_precision == "mixed_float16":
        # Dynamic loss scaling keeps small float16 gradients from underflowing.
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def _adapt_to_multi_worker(model):
    """Works around Keras 3.15's ``fit`` under MultiWorkerMirroredStrategy
    (keras-team/keras#20585), for this model only.

    Keras reduces each step's logs across workers with
    ``strategy.reduce("MEAN", v, axis=0)``, which fails on scalars, and its
    pre-``fit`` symbolic build reduces a whole data batch, which fails on an
    ``(x, y)`` tuple. So the steps return shape-``(1,)`` logs (reduced to the
    cross-worker mean scalar), and the model is created outside the strategy
    scope (so Keras skips the symbolic build; it is already built) while
    ``compile``/``fit``/``evaluate`` run inside it. The optimizer is built
    here, in cross-replica context, because no symbolic build does it.
    """
    train_step, test_step = model.train_step, model.test_step

    def as_vectors(logs):
        return {key: keras.ops.reshape(value, (1,))
                for key, value in logs.items()}

    model.train_step = lambda data: as_vectors(train_step(data))
    model.test_step = lambda data: as_vectors(test_step(data))
    model.optimizer.build(model.classifier.trainable_variables)


def _last_step_lr(learning_rate, optimizer):
    """The rate of the last step taken (``learning_rate``: float or
    schedule)."""
    if not callable(learning_rate):
        return float(learning_rate)
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    step = max(0, int(keras.ops.convert_to_numpy(inner.iterations)) - 1)
    return float(keras.ops.convert_to_numpy(learning_rate(step)))


# -------------------------------------------------------------- callbacks


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
        self.run_dir = run_dir
        self.monitor = monitor
        self.learning_rate = learning_rate
        self.save_checkpoints = save_checkpoints
        self.rows = []
        self.resumed_from_epoch = 0
        self._truncated = False
        self._epoch_start = None

    def on_train_begin(self, logs=None):
        path = os.path.join(self.run_dir, HISTORY_JSON)
        self.rows = []
        if os.path.isfile(path):
            with open(path) as handle:
                self.rows = json.load(handle)
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
        row["learning_rate"] = _last_step_lr(self.learning_rate,
                                              self.model.optimizer)
        row["seconds"] = round(time.time() - self._epoch_start, 3)
        improved = self.monitor in row and all(
            row[self.monitor] > r.get(self.monitor, -math.inf)
            for r in self.rows)
        self.rows.append(row)
        if self.save_checkpoints:
            folder = os.path.join(self.run_dir, CHECKPOINT_DIR)
            os.makedirs(folder, exist_ok=True)
            _atomic_save_keras(self.model, os.path.join(folder, "last.keras"))
            if improved:
                _atomic_save_keras(self.model,
                                   os.path.join(folder, "best.keras"))
        self._write()

    def _write(self):
        _atomic_write_text(os.path.join(self.run_dir, HISTORY_JSON),
                           json.dumps(self.rows, indent=1))
        keys = list(dict.fromkeys(k for r in self.rows for k in r))
        lines = [",".join(keys)] + [
            ",".join("" if r.get(k) is None else repr(r[k]) for k in keys)
            for r in self.rows]
        _atomic_write_text(os.path.join(self.run_dir, HISTORY_CSV),
                           "\n".join(lines) + "\n")


# ------------------------------------------------------------------ train


def _check_dirs(config, cluster):
    """Checks the output folders before anything expensive runs.

    Returns:
        ``(run_dir, finished)``: where this task writes, and whether it holds
        a finished run that ``overwrite`` lets us replace.
    """
    model_dir = config.model_dir
    if os.path.exists(model_dir) and not os.path.isdir(model_dir):
        raise ConfigError(f"`model_dir` is a file, not a folder. Received: "
                          f"model_dir={model_dir!r}")
    if config.export:
        for path in (config.export_dir,
                     os.path.join(config.export_dir, config.export_name or "")):
            if os.path.exists(path) and not os.path.isdir(path):
                raise ConfigError(
                    f"The export folder '{path}' is a file; it must be a "
                    f"folder of numbered versions. Received: "
                    f"export_dir={config.export_dir!r}")
    if not cluster.is_chief:
        return os.path.join(model_dir, WORKERS_DIR, cluster.task), False
    finished = os.path.isfile(os.path.join(model_dir, METRICS_FILE))
    if finished and not config.overwrite:
        raise ConfigError(
            f"'{model_dir}' holds a finished run ({METRICS_FILE} exists). "
            f"Use another --model_dir, or --overwrite to start over. "
            f"Received: model_dir={model_dir!r}")
    return model_dir, finished


def _start_run_dir(run_dir, finished, flags_text, commit, is_chief):
    """Creates ``run_dir`` (clearing a finished run's files when allowed)
    and writes the replayable flagfile with the git commit."""
    if finished:
        for name in _RUN_OUTPUTS:
            path = os.path.join(run_dir, name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.remove(path)
    os.makedirs(run_dir, exist_ok=True)
    if is_chief and flags_text is not None:
        _atomic_write_text(os.path.join(run_dir, FLAGS_FILE),
                           f"# git commit: {commit}\n{flags_text}")


def _export_name(config, info):
    if config.export_name:
        return config.export_name
    model = config.model if config.model in MODEL_NAMES else \
        os.path.splitext(os.path.basename(config.model))[0]
    name = f"{info.name}_{model}_{config.method}"
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def train(config):
    """Runs one training job end to end (see the module docstring).

    Args:
        config: A `TrainConfig`.

    Returns:
        The dict written to ``model_dir/metrics.json`` (on the chief; other
        workers return the same keys without the export).

    Raises:
        ConfigError: For bad settings, data or paths, before training starts.
    """
    config = config.validate()
    previous_policy = keras.mixed_precision.global_policy()
    try:
        return _train(config)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)


def _train(config):
    started = time.time()
    # A multi-worker strategy must exist before other TF ops run.
    cluster = _make_cluster(config)
    strategy = cluster.strategy
    run_dir, finished = _check_dirs(config, cluster)
    commit = git_commit()

    jit_compile = config.jit_compile
    jit_note = None
    if jit_compile and cluster.replicas > 1 and cluster.cpu_only:
        # XLA + MirroredStrategy over logical CPU devices fails in TF 2.21
        # ("Trying to access resource ... replica_1 ... from device CPU:0").
        jit_note = ("jit_compile disabled: XLA with several replicas on CPU "
                    "devices is not supported by TensorFlow")
        logging.warning(jit_note)
        jit_compile = False

    if config.mixed_precision != "none":
        keras.mixed_precision.set_global_policy(config.mixed_precision)
    keras.utils.set_random_seed(config.seed)

    try:
        info = data.load_dataset(config.dataset, data_dir=config.data_dir,
                                 image_size=config.image_size,
                                 seed=config.data_seed)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    train_data, num_train = _subset(info.train, config.max_train_examples,
                                    info.num_train, config.data_seed)
    test_data, num_test = _subset(info.test, config.max_test_examples,
                                  info.num_test, config.data_seed + 1)
    export_base = os.path.join(config.export_dir, _export_name(config, info))
    if config.export and cluster.is_chief:
        _check_export_target(export_base, config.export_version)
    if num_train < 1 or num_test < 1:
        raise ConfigError(f"The dataset has {num_train} training and "
                          f"{num_test} test examples; both must be >= 1. "
                          f"Received: dataset={config.dataset!r}")
    if config.batch_size % cluster.replicas:
        raise ConfigError(
            f"`batch_size` is the global batch and must be divisible by the "
            f"{cluster.replicas} replicas. Received: "
            f"batch_size={config.batch_size}")
    if num_train < config.batch_size:
        logging.warning("Only %d training examples for a batch of %d: "
                        "batches repeat examples.", num_train,
                        config.batch_size)
    steps_per_epoch = config.steps_per_epoch or math.ceil(
        num_train / config.batch_size)
    # Repeat + fixed steps per epoch: every worker runs the same number of
    # full global batches, and an epoch needs no end-of-data signal.
    train_pipeline = _distribute_options(data.make_pipeline(
        train_data, config.batch_size, shuffle=True,
        augment=None if config.augment == "none" else config.augment,
        seed=config.seed, drop_remainder=True, repeat=True))
    eval_batch = min(config.batch_size, num_test)
    if cluster.replicas > 1:
        # Full, evenly split batches under a strategy (the few examples past
        # the last full batch are skipped and not counted).
        eval_batch = max(cluster.replicas,
                         eval_batch - eval_batch % cluster.replicas)
    test_pipeline = _distribute_options(data.make_pipeline(
        test_data, eval_batch, drop_remainder=cluster.replicas > 1))
    num_eval = num_test if cluster.replicas == 1 else (
        num_test - num_test % eval_batch)
    if num_eval < 1:
        raise ConfigError(f"{num_test} test examples cannot be split over "
                          f"{cluster.replicas} replicas.")

    learning_rate = _learning_rate(config, steps_per_epoch)
    multi_worker = isinstance(strategy,
                              tf.distribute.MultiWorkerMirroredStrategy)
    try:
        with strategy.scope():
            classifier, stage_layers = _build_classifier(config, info,
                                                         cluster.replicas)
            num_decayed = add_weight_decay(classifier, config.weight_decay)
            attack = methods.default_attack(
                config.method, eps=config.eps, step_size=config.step_size,
                num_steps=config.num_steps, seed=config.seed)
            eval_attack = None
            if config.eval_pgd_steps > 0:
                eval_attack = PGDAttack(config.eps, step_size=config.step_size,
                                        num_steps=config.eval_pgd_steps,
                                        seed=config.seed + 1)
            if not multi_worker:
                model = ATALPModel(classifier, stage_layers=stage_layers)
        if multi_worker:
            # Built outside the scope (its variables all live in the
            # classifier, the attacks and compile, made inside): see
            # _adapt_to_multi_worker.
            model = ATALPModel(classifier, stage_layers=stage_layers)
        with strategy.scope():
            model.compile(
                optimizer=_optimizer(config, learning_rate),
                method=config.method, attack=attack, eval_attack=eval_attack,
                natural_weight=config.natural_weight,
                adv_weight=config.adv_weight, alp_weight=config.alp_weight,
                at_weight=config.at_weight, trades_beta=config.trades_beta,
                jit_compile=jit_compile,
                steps_per_execution=config.steps_per_execution)
            if multi_worker:
                _adapt_to_multi_worker(model)
    except ValueError as error:
        raise ConfigError(str(error)) from None

    # Everything checked: only now touch model_dir.
    _start_run_dir(run_dir, finished, config.flags_text, commit,
                   cluster.is_chief)
    logging.info("Training %s (%s, %d weights, %d kernels with L2) on %s: "
                 "%d train / %d test examples, %d replicas, %d steps/epoch.",
                 classifier.name, config.method, classifier.count_params(),
                 num_decayed, info.name, num_train, num_eval,
                 cluster.replicas, steps_per_epoch)

    monitor = "val_adv_accuracy" if eval_attack is not None \
        else "val_accuracy"
    # Every worker saves (others into their own folder): saving reads synced
    # metric variables, a collective op all workers must join.
    run_log = RunLog(run_dir, monitor, learning_rate)
    backup = keras.callbacks.BackupAndRestore(
        os.path.join(run_dir, BACKUP_DIR), save_freq="epoch",
        double_checkpoint=True, delete_checkpoint=False)
    callbacks = [run_log, backup]  # RunLog first: see its docstring.
    tensorboard_note = None
    if cluster.is_chief and importlib.util.find_spec("tensorboard"):
        callbacks.append(keras.callbacks.TensorBoard(
            os.path.join(run_dir, LOG_DIR), write_graph=False,
            profile_batch=0))
    elif cluster.is_chief:
        # tensorflow-cpu does not depend on tensorboard; tf.summary needs it.
        tensorboard_note = ("no TensorBoard logs: the tensorboard package is "
                            "not installed (pip install tensorboard)")
        logging.warning(tensorboard_note)

    fit_started = time.time()
    with strategy.scope():
        model.fit(train_pipeline, epochs=config.epochs,
                  steps_per_epoch=steps_per_epoch,
                  validation_data=test_pipeline, callbacks=callbacks,
                  verbose=config.verbose,
                  shuffle=False)  # The pipeline shuffles (seeded).
        fit_seconds = time.time() - fit_started
        test_logs = model.evaluate(test_pipeline, return_dict=True,
                                   verbose=config.verbose)

    result = {
        "git_commit": commit,
        "config": _to_python(dataclasses.asdict(
            dataclasses.replace(config, flags_text=None))),
        "dataset": {"name": info.name, "spec": config.dataset,
                    "input_shape": list(info.input_shape),
                    "num_classes": info.num_classes,
                    "class_names": list(info.class_names),
                    "num_train": num_train, "num_test": num_eval},
        "model": {"name": classifier.name,
                  "params": int(classifier.count_params()),
                  "stage_layers": list(model.stage_layers)},
        "training": {
            "distribution": config.distribution,
            "strategy": type(strategy).__name__,
            "replicas": cluster.replicas,
            "task": cluster.task,
            "jit_compile": jit_compile,
            "jit_compile_note": jit_note,
            "tensorboard_note": tensorboard_note,
            "steps_per_epoch": steps_per_epoch,
            "attack": _to_python(attack.describe()) if attack else None,
            "loss_weights": dict(model.loss_weights_),
            "epochs_completed": len(run_log.rows),
            "resumed_from_epoch": run_log.resumed_from_epoch,
            "fit_seconds": round(fit_seconds, 2),
        },
        "history": run_log.rows,
        "test": {
            "n": num_eval,
            "accuracy": float(test_logs["accuracy"]),
            "adv_accuracy": (float(test_logs["adv_accuracy"])
                             if "adv_accuracy" in test_logs else None),
            "attack": (_to_python(eval_attack.describe())
                       if eval_attack is not None else None),
        },
    }

    classifier_path = os.path.join(run_dir, CLASSIFIER_FILE)
    _atomic_save_keras(classifier, classifier_path)
    _atomic_save_keras(model, os.path.join(run_dir, MODEL_FILE))
    if not cluster.is_chief:
        # Temporary copies of the chief's files; the classifier stays as a
        # record of this worker's final weights.
        os.remove(os.path.join(run_dir, MODEL_FILE))
        shutil.rmtree(os.path.join(run_dir, CHECKPOINT_DIR),
                      ignore_errors=True)
    else:
        if config.export:
            result["export_path"] = _export(config, info, export_base,
                                            classifier_path, commit, result)
        result["seconds"] = round(time.time() - started, 2)
        _atomic_write_text(os.path.join(run_dir, METRICS_FILE),
                           json.dumps(_to_python(result), indent=2))
    # The run is complete: the backup is no longer needed to resume it.
    shutil.rmtree(os.path.join(run_dir, BACKUP_DIR), ignore_errors=True)
    return _to_python(result)


def _check_export_target(base_dir, version):
    if os.path.exists(base_dir) and not os.path.isdir(base_dir):
        raise ConfigError(
            f"The export folder '{base_dir}' is a file; it must be a folder of "
            f"numbered versions. Received: export folder {base_dir!r}")
    if version and os.path.exists(os.path.join(base_dir, str(version))):
        raise ConfigError(
            f"Export version {version} already exists in '{base_dir}'; "
            f"versions are never overwritten. Use --export_version=0 for the "
            f"next free one. Received: export_version={version}")


def _export(config, info, base_dir, classifier_path, commit, result):
    """Exports a fresh, strategy-free copy of the final classifier."""
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
        "test_accuracy": result["test"]["accuracy"],
        "test_adv_accuracy": result["test"]["adv_accuracy"],
    }
    try:
        return export.export_saved_model(
            classifier, base_dir, version=config.export_version or None,
            metadata=metadata)
    except ValueError as error:
        # Only a version that appeared meanwhile gets here (checked up front).
        raise ConfigError(str(error)) from None
