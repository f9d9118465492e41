"""`TrainConfig`: every setting of a training run, each declared once.

A field's ``metadata`` holds its help text and, where they apply, its choices
and bounds; the command line (``atalp-train``) generates its flags
from them, and `TrainConfig.validate` checks the same choices and bounds, so
a new setting is one field here. Flag names are field names.
"""

import dataclasses
import math
import numbers
import os
from typing import Optional

from atalp_keras import methods
from atalp_keras.parsing import parse_eps, parse_image_size
from atalp_keras.errors import UsageError

OPTIMIZERS = ("sgd", "adam")
LR_SCHEDULES = ("constant", "piecewise", "cosine")
AUGMENTATIONS = ("none", "crop", "crop_flip")
PRECISIONS = ("none", "mixed_float16", "mixed_bfloat16")
DISTRIBUTIONS = ("default", "one_device", "mirrored", "multi_worker")
WEIGHTS = ("none", "imagenet")
KEEP = ("best", "last")
IMAGENET_MODELS = ("resnet50", "resnet101", "resnet152")


# The settings that cannot change the trained weights: a run folder's record
# (run_folder.check_run_dir) ignores them, so an interrupted run may resume
# with other values. ``epochs`` may also grow (see GROWING_SETTINGS); every
# other setting must equal the recorded one.
NON_WEIGHT_SETTINGS = ("verbose", "flags_text", "overwrite", "model_dir",
                       "export", "export_dir", "export_name", "export_version")
GROWING_SETTINGS = ("epochs",)
# The value of a setting newer than a run's record: what that run was trained
# with (no held-out split, the last epoch, no AWP, no MART, one training pass
# of the clean and adversarial batch).
BEFORE_RECORDED = {"validation_split": 0.0, "keep": "last", "awp_gamma": 0.0,
                   "awp_warmup_epochs": 0, "mart_beta": None, "pair_pass": "joint"}


def model_names():
    """The backbone names ``model`` accepts (the backbone registry's)."""
    from atalp_keras import backbones

    return backbones.names()


def __getattr__(name):
    # MODEL_NAMES is derived on first use: the registry imports Keras.
    if name == "MODEL_NAMES":
        return model_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def setting(default, help, **metadata):
    """A dataclass field with its help (and choices/bounds) in ``metadata``."""
    return dataclasses.field(default=default,
                             metadata=dict(help=help, **metadata))


def _parse_eps_or_none(text, name):
    return None if str(text).strip() in ("", "None") else parse_eps(text, name)


def _loss_weight(term):
    return setting(None, f"Weight of the {term} term; default: the preset's.",
                   lower_bound=0.0)


@dataclasses.dataclass
class TrainConfig:
    """Every setting of a training run; see each field's help (what
    ``atalp-train --help`` prints). `validate` returns a checked,
    normalised copy."""

    # Data.
    dataset: str = setting(
        "digits", "Training data: 'digits' (sklearn's 8x8 digits, bundled), "
        "'tfds:<name>[:test_split]' (a TFDS set prepared in --data_dir), "
        "'folder:<path>' (class subfolders, optionally under train/ and test/)"
        " or 'idx:<path>' (MNIST-format IDX files).")
    data_dir: Optional[str] = setting(
        None, "TFDS data folder for 'tfds:' datasets (default: "
        "~/tensorflow_datasets).")
    image_size: Optional[tuple] = setting(
        None, "Resize images to H,W (or one number for square); empty keeps "
        "them.", parser=parse_image_size)
    data_seed: int = setting(
        0, "Seed of the train/test split of 'digits' and 'folder:' data (and "
        "of the example subsets), apart from --seed so models trained with "
        "different seeds share one test set. Keep it fixed across models "
        "that are compared.", lower_bound=0)
    max_train_examples: int = setting(
        0, "Train on a fixed random subset of this many examples; 0 = all.",
        lower_bound=0)
    max_test_examples: int = setting(
        0, "Evaluate on a fixed random subset of this many test examples; "
        "0 = all.", lower_bound=0)
    augment: str = setting(
        "none", "Training augmentation: none; crop (random shift: zero-pad "
        "then crop); crop_flip (shift plus horizontal flip, the CIFAR "
        "standard).", choices=AUGMENTATIONS)
    # Model.
    model: str = setting(
        "tiny", "Classifier: a backbone name (tiny, cnn = a plain CNN for "
        "black-box transfer, resnet18, resnet34, resnet50, resnet101, "
        "resnet152, ...), or a path to a .keras file holding a functional "
        "logits classifier (or a saved training model.keras).")
    stage_layers: tuple = setting(
        (), "Comma-separated names of the layers whose attention maps are "
        "paired; empty = ResNet stage ends conv{2..5}_block{N}_out.")
    tiny_widths: tuple = setting(
        (8, 16, 16, 32), "Filters of the 4 stages of --model=tiny.", item=int)
    weights: str = setting(
        "none", "Initial weights: none (random) or imagenet (resnet50/101/"
        "152; downloads once, needs network).", choices=WEIGHTS)
    # Method.
    method: str = setting(
        "at_alp", "Training preset (METHOD.md): standard, pat (Madry), alp "
        "(Kannan), at (attention pairing), at_alp (the paper), trades, fast "
        "(Wong).", choices=tuple(methods.METHODS))
    eps: float = setting(
        8 / 255, "L-inf radius of the training attack on the [0, 1] pixel "
        "scale; 8/255 and 0.0314 both work. Also the radius of the per-epoch "
        "validation attack.", parser=parse_eps)
    step_size: Optional[float] = setting(
        None, "Step of the training attack, same scale; default eps/4.",
        parser=_parse_eps_or_none)
    num_steps: Optional[int] = setting(
        None, "Steps of the training attack; default: the preset's (7, "
        "trades, mart 10). 'fast' always takes one step of 1.25*eps.",
        lower_bound=1)
    natural_weight: Optional[float] = _loss_weight("clean cross-entropy")
    adv_weight: Optional[float] = _loss_weight("adversarial cross-entropy")
    alp_weight: Optional[float] = _loss_weight("logit pairing (ALP)")
    at_weight: Optional[float] = _loss_weight("attention pairing (AT)")
    trades_beta: Optional[float] = _loss_weight("TRADES KL")
    mart_beta: Optional[float] = _loss_weight("MART weighted KL")
    awp_gamma: float = setting(
        0.0, "Adversarial weight perturbation (Wu et al. 2020) over any "
        "preset: after the attack, every conv/dense kernel is pushed up the "
        "preset's loss by this fraction of its norm and the update is the "
        "gradient there. 0 = off (no cost); csdongxian/AWP uses 0.01 for "
        "PGD-AT, 0.005 for TRADES. One more training pass per step.",
        lower_bound=0.0, upper_bound=1.0, high_open=True)
    awp_warmup_epochs: int = setting(
        0, "Epochs trained without the weight perturbation first.",
        lower_bound=0)
    pair_pass: str = setting(
        "joint", "Methods that score the clean batch and its adversarial twin "
        "(all but pat, fast, standard): joint = one training pass of both "
        "(METHOD.md; BatchNorm normalises them together); separate = one pass "
        "each, clean then adversarial, as the TRADES and MART reference code "
        "does.", choices=methods.PAIR_PASSES)
    clean_metrics: bool = setting(
        True, "pat and fast only (they train on x_adv alone): score the "
        "clean batch in every training step to log `accuracy` and "
        "`ce_natural`, one extra inference forward (about 1/18 of a PGD-7 "
        "step). --noclean_metrics is the fastest setting: the history then "
        "has clean accuracy from validation only. Other presets get both "
        "from their training pass for free; for them it changes nothing.")
    overfit_guard_drop: float = setting(
        0.0, "Early stop against catastrophic overfitting (Wong et al. "
        "2020; meant for --method=fast): after every epoch, PGD-10 at --eps "
        "attacks 512 fixed training images; when their accuracy falls more "
        "than this (e.g. 0.2 = 20 points) below the best epoch's, training "
        "stops with the best epoch's weights, and metrics.json says so. "
        "0 = off. Not with --distribution=multi_worker.", lower_bound=0.0,
        upper_bound=1.0)
    eval_pgd_steps: int = setting(
        methods.EVAL_PGD_STEPS, "Steps of the PGD attack (at --eps, "
        "--step_size) that measures test adv_accuracy after every epoch and "
        "at the end; 0 = clean only.", lower_bound=0)
    eval_adv_examples: int = setting(
        1000, "Validation examples the per-epoch validation attacks: a fixed "
        "random subset (seeded by --data_seed) of this many is scored under "
        "the --eval_pgd_steps attack, every validation example clean, so the "
        "attack costs the same whatever the split's size; 0 = attack all "
        "of them every epoch. Under several replicas at least one global "
        "eval batch (each partial batch is dropped there).", lower_bound=0)
    validation_split: float = setting(
        0.1, "Fraction of the training examples held out (a fixed random "
        "subset, seeded by --data_seed) for the per-epoch validation, "
        "best.keras, --keep=best and the overfit guard; the test set is "
        "scored once, at the end. 0 = no held-out split and no per-epoch "
        "validation (then --keep=last).", lower_bound=0.0, upper_bound=1.0,
        high_open=True)
    keep: str = setting(
        "best", "Which weights the run keeps (classifier.keras, the final "
        "test evaluation, the export): best = the epoch with the highest "
        "validation adversarial accuracy (clean accuracy without an eval "
        "attack), the early stopping of Rice et al. 2020; last = the last "
        "epoch's.", choices=KEEP)
    # Optimisation.
    epochs: int = setting(10, "Number of epochs.", lower_bound=1)
    steps_per_epoch: int = setting(
        0, "Batches per epoch; 0 = one pass over the training set.",
        lower_bound=0)
    batch_size: int = setting(
        128, "GLOBAL batch size: the sum over all replicas (each of R "
        "replicas gets batch_size/R examples).", lower_bound=1)
    optimizer: str = setting(
        "sgd", "Optimizer: sgd (with --momentum) or adam.",
        choices=OPTIMIZERS)
    learning_rate: float = setting(
        0.1, "Initial learning rate.", lower_bound=0.0, low_open=True)
    momentum: float = setting(
        0.9, "SGD momentum.", lower_bound=0.0, upper_bound=1.0,
        high_open=True)
    nesterov: bool = setting(False, "Nesterov momentum (SGD).")
    lr_schedule: str = setting(
        "constant", "constant; piecewise (times --lr_decay at each epoch in "
        "--lr_boundaries); cosine (decays to 0 at the last epoch).",
        choices=LR_SCHEDULES)
    lr_boundaries: tuple = setting(
        (), "Epochs at which the piecewise schedule decays, e.g. 75,90.",
        item=float)
    lr_decay: float = setting(
        0.1, "Factor applied at each piecewise boundary.", lower_bound=0.0,
        upper_bound=1.0, low_open=True)
    weight_decay: float = setting(
        0.0, "L2 weight decay on all conv/dense kernels, PyTorch-style (adds "
        "wd*W to each kernel's gradient; 5e-4 = the CIFAR standard).",
        lower_bound=0.0)
    seed: int = setting(
        0, "Seed of the initial weights, shuffling, augmentation and "
        "attacks.", lower_bound=0)
    # Outputs.
    model_dir: str = setting(
        "runs/default", "Folder of the run's files; it belongs to one "
        "configuration (run_config.json). Starting again with the same "
        "settings (a longer --epochs, other --verbose and --export* values "
        "allowed) resumes an interrupted run; other settings, a finished run "
        "and a folder another process trains in are refused.")
    overwrite: bool = setting(
        False, "Start over in --model_dir: its run (backup, checkpoints, "
        "logs, history, metrics, record, and its eval/ folder, which describes "
        "the old weights) is cleared first; exports stay.")
    export: bool = setting(
        True, "Export a SavedModel for TF Serving at the end.")
    export_dir: str = setting(
        "saved_models", "Folder of exports: "
        "<export_dir>/<export_name>/<version>/.")
    export_name: str = setting(
        "", "Model name under --export_dir; empty = "
        "<dataset>_<model>_<method>.")
    export_version: int = setting(
        0, "Export version; 0 = the next free one. Existing versions are "
        "never overwritten.", lower_bound=0)
    # Execution.
    jit_compile: bool = setting(
        False, "XLA-compile the train/test steps (ignored with a warning for "
        "several replicas on CPU devices, where TensorFlow fails).")
    mixed_precision: str = setting(
        "none", "none (float32); mixed_float16 (GPU, with dynamic loss "
        "scaling); mixed_bfloat16 (TPU / recent CPUs and GPUs).",
        choices=PRECISIONS)
    distribution: str = setting(
        "default", "default (no strategy); one_device; mirrored (all local "
        "GPUs, or --devices; all CPU devices if there is no GPU); "
        "multi_worker (MultiWorkerMirroredStrategy from the TF_CONFIG "
        "variable).", choices=DISTRIBUTIONS)
    devices: tuple = setting(
        (), "Devices for one_device/mirrored, e.g. /gpu:0,/gpu:1.")
    steps_per_execution: int = setting(
        1, "Batches run per compiled call.", lower_bound=1)
    verbose: int = setting(
        1, "0 silent, 1 progress bars, 2 one line per epoch.", lower_bound=0,
        upper_bound=2)
    # Not a flag: the replayable flagfile the command line writes into
    # model_dir/flags.txt (None writes none).
    flags_text: Optional[str] = None

    def validate(self):
        """Checks every setting; returns a normalised copy.

        Raises:
            UsageError: naming the first bad setting and its value.
        """
        c = dataclasses.replace(self)
        for field in dataclasses.fields(c):
            _check_declared(c, field)
        _check_model(c)
        c.image_size = parse_image_size(c.image_size)
        c.stage_layers = tuple(str(s) for s in (c.stage_layers or ()) if s)
        c.tiny_widths = tuple(c.tiny_widths)
        if len(c.tiny_widths) != 4 or not all(
                _is_int(w) and w >= 1 for w in c.tiny_widths):
            raise UsageError(f"`tiny_widths` must be 4 positive integers "
                             f"(filters per stage). Received: "
                             f"tiny_widths={c.tiny_widths!r}")
        c.tiny_widths = tuple(int(w) for w in c.tiny_widths)
        c.eps = parse_eps(c.eps, "eps")
        c.step_size = (methods.default_step_size(c.eps) if c.step_size is None
                       else parse_eps(c.step_size, "step_size"))
        if c.num_steps is None:
            c.num_steps = methods.get_method(c.method).num_steps
        _check_schedule(c)
        _check_outputs_and_devices(c)
        _check_selection(c)
        return c


# ------------------------------------------------------------ validation


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value):
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(value))


def _check_declared(config, field):
    """The choices and bounds of ``field``'s metadata, on ``config``."""
    meta, name = field.metadata, field.name
    value = getattr(config, name)
    if "choices" in meta and value not in meta["choices"]:
        raise UsageError(f"Unknown {name} {value!r}. Expected one of: "
                         f"{', '.join(meta['choices'])}. Received: "
                         f"{name}={value!r}")
    if value is None and field.default is None:
        return
    kind = field.type
    if kind in (int, Optional[int]):
        if not _is_int(value) or value < meta.get("lower_bound", -math.inf) \
                or value > meta.get("upper_bound", math.inf):
            raise UsageError(f"`{name}` must be an integer in "
                             f"{_interval(meta, int)}. Received: "
                             f"{name}={value!r}")
        setattr(config, name, int(value))
    elif kind in (float, Optional[float]) and "parser" not in meta:
        if not (_is_number(value) and _inside(value, meta)):
            raise UsageError(f"`{name}` must be a number in "
                             f"{_interval(meta, float)}. Received: "
                             f"{name}={value!r}")
        setattr(config, name, float(value))


def _inside(value, meta):
    low, high = meta.get("lower_bound"), meta.get("upper_bound")
    if low is not None and (value <= low if meta.get("low_open")
                            else value < low):
        return False
    return high is None or (value < high if meta.get("high_open")
                            else value <= high)


def _interval(meta, kind):
    low, high = meta.get("lower_bound"), meta.get("upper_bound")
    left = "(" if meta.get("low_open") else "["
    right = ")" if meta.get("high_open") else "]"
    return (f"{left}{'-inf' if low is None else kind(low)}, "
            f"{'inf' if high is None else kind(high)}{right}")


def _check_model(c):
    if not isinstance(c.dataset, str) or not c.dataset.strip():
        raise UsageError(f"`dataset` must be a non-empty string. "
                         f"Received: dataset={c.dataset!r}")
    if not isinstance(c.model, str) or not c.model:
        raise UsageError(f"`model` must be a name or a .keras path. "
                         f"Received: model={c.model!r}")
    names = model_names()
    if c.model not in names:
        if not c.model.endswith(".keras"):
            raise UsageError(
                f"Unknown model {c.model!r}. Expected one of: "
                f"{', '.join(names)}, or a path to a .keras file. "
                f"Received: model={c.model!r}")
        if not os.path.isfile(c.model):
            raise UsageError(f"No .keras file at this path. Received: "
                             f"model={c.model!r}")
    if c.weights == "imagenet" and c.model not in IMAGENET_MODELS:
        raise UsageError(
            "ImageNet weights exist only for resnet50/101/152. Received: "
            f"weights='imagenet', model={c.model!r}")


def _check_schedule(c):
    c.lr_boundaries = tuple(c.lr_boundaries or ())
    if c.lr_schedule != "piecewise":
        if c.lr_boundaries:
            raise UsageError(
                f"`lr_boundaries` applies to lr_schedule='piecewise' only. "
                f"Received: lr_schedule={c.lr_schedule!r}, "
                f"lr_boundaries={c.lr_boundaries!r}")
        return
    if not c.lr_boundaries:
        raise UsageError(
            "lr_schedule='piecewise' needs lr_boundaries (epochs at which the "
            "rate decays), e.g. (75, 90). Received: lr_boundaries=()")
    bounds = c.lr_boundaries
    if not all(_is_number(b) and b > 0 for b in bounds) \
            or list(bounds) != sorted(set(bounds)):
        raise UsageError("`lr_boundaries` must be increasing epochs > 0. "
                         f"Received: lr_boundaries={bounds!r}")
    if bounds[-1] >= c.epochs:
        # Allowed (a short trial of a long config), but worth a word.
        from absl import logging

        logging.warning("lr_boundaries %s reach past the last epoch (%d): "
                        "those decays never happen.", list(bounds), c.epochs)


def _check_selection(c):
    if c.keep == "best" and c.validation_split == 0:
        raise UsageError(
            "keep='best' picks the epoch by the held-out validation split, and "
            "validation_split=0 holds none out. Received: validation_split=0, "
            "keep='best'. Use --keep=last, or hold out a split (e.g. "
            "--validation_split=0.1).")
    if c.overfit_guard_drop > 0 and c.validation_split == 0:
        raise UsageError(
            "The overfit guard watches the held-out validation split, and "
            "validation_split=0 holds none out. Received: overfit_guard_drop="
            f"{c.overfit_guard_drop!r}, validation_split=0")
    if c.awp_warmup_epochs and not c.awp_gamma:
        raise UsageError(
            "awp_warmup_epochs delays the weight perturbation, which is off "
            f"(awp_gamma=0). Received: awp_warmup_epochs={c.awp_warmup_epochs}")
    # AWP without an attack (method 'standard') is refused by compile, which
    # train() calls before it touches the run folder.


def _check_outputs_and_devices(c):
    c.devices = tuple(str(d) for d in (c.devices or ()) if d)
    if c.devices and c.distribution not in ("one_device", "mirrored"):
        raise UsageError(
            "`devices` applies to distribution 'one_device' or 'mirrored'. "
            f"Received: distribution={c.distribution!r}, "
            f"devices={c.devices!r}")
    if c.overfit_guard_drop > 0 and c.distribution == "multi_worker":
        raise UsageError(
            "overfit_guard_drop runs on one machine only (each worker would "
            "decide alone when to stop). Received: overfit_guard_drop="
            f"{c.overfit_guard_drop!r}, distribution='multi_worker'")
    if c.distribution == "one_device" and len(c.devices) > 1:
        raise UsageError(f"distribution='one_device' takes one device. "
                         f"Received: devices={c.devices!r}")
    if not c.model_dir:
        raise UsageError("`model_dir` must be a folder path. Received: "
                         "model_dir=''")
    if c.export_name and (os.sep in c.export_name
                          or c.export_name in (".", "..")):
        raise UsageError(f"`export_name` must be a plain folder name. "
                         f"Received: export_name={c.export_name!r}")
