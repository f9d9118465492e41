"""The AT+ALP reproduction report in one command (issue 5).

    python experiments/reproduce.py              # full run on digits (< 1 h on 2 quiet cores)
    python experiments/reproduce.py --quick      # same code path, small numbers (minutes)
    python experiments/reproduce.py --dataset=tfds:cifar10 --data_dir=/data/tfds \\
        --model=resnet18 --eps=8/255 --step_size=2/255 --eval_eps=8/255,16/255 \\
        --augment=crop_flip --epochs=100 --batch_size=128 --learning_rate=0.1 \\
        --weight_decay=5e-4 --num_test=1000 --out=runs/reproduce_cifar10 \\
        --report=docs/results_cifar10.md          # a GPU job

What it does, in order (METHOD.md defines every term):

1. Sweep. ``at_alp`` is trained on a split of the TRAINING set with each
   ``--at_weights`` value (ALP weight at the preset's 0.5), then with each
   ``--alp_weights`` value at the chosen AT weight. The held-out part of the
   training set (``--val_fraction``) scores every point by PGD-20 accuracy at
   the training eps (clean accuracy breaks ties); the test set is never used.
2. Training. Every ``--methods`` preset with the tiny ResNet, once per
   ``--seeds`` value, plus per method a gray-box source (same architecture and
   method, seed ``--source_seed``) and a black-box source (another
   architecture, ``--blackbox_model``), all with the same recipe and epochs.
   ``at`` and ``at_alp`` use the weights chosen in step 1.
3. Evaluation of every main model on the test set: clean, FGSM, PGD-20 with
   ``--pgd_restarts`` restarts, AutoAttack, RayS (hard label) and PGD over
   ``--iterations`` white-box, gray-box and black-box, at every ``--eval_eps``.
4. Figures (attention maps, accuracy vs iterations, loss landscapes, accuracy
   vs eps) and ``--report``: the command, machine, versions, the sweep, mean +-
   std over seeds with the attack settings, training time per epoch, and a
   discussion generated from the measured numbers.

Resumable: a model whose ``classifier.keras`` and ``metrics.json`` exist in
``--out`` is not trained again (an interrupted training resumes from its last
epoch), and each model's evaluation is written to ``--out/eval/*.json`` as
soon as it is done and reused on the next run. Changing the recipe needs
another ``--out`` (the run refuses to mix models trained differently).
"""

import dataclasses
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
PROGRAM = "experiments/reproduce.py"
DEFAULT_METHODS = ("standard", "pat", "alp", "at", "at_alp", "trades", "fast")
METHOD_LABELS = {"standard": "standard (no defense)", "pat": "PAT (Madry)",
                 "alp": "ALP (Kannan)", "at": "AT (attention)",
                 "at_alp": "AT+ALP (paper)", "trades": "TRADES",
                 "fast": "fast (Wong)"}
# Black-box source architecture when --blackbox_model=auto: another member of
# the main model's family with another depth (the paper: ResNet-152 against
# ResNet-101).
AUTO_BLACKBOX = {"tiny": "tiny_deep", "resnet18": "resnet34",
                 "resnet34": "resnet18", "resnet50": "resnet101",
                 "resnet101": "resnet152", "resnet152": "resnet101"}
# Smaller numbers of --quick; a flag given on the command line wins.
QUICK = {
    "seeds": ["0"],
    "epochs": 5,
    "at_weights": ["0.3", "1"],
    "alp_weights": ["0.5"],
    "num_test": 120,
    "autoattack": "fast",
    "rays_queries": 500,
    "iterations": ["10", "20", "50"],
    "curve_eps": ["0.1"],
    "attention_images": 2,
    "landscape_images": 8,
    "landscape_points": 11,
    "out": "runs/reproduce_quick",
}
_FLAG_NAMES = []


def define_flags():
    """Defines this entry point's flags (only here, never in the library)."""

    def define(kind, name, default, help_text, **kwargs):
        getattr(flags, f"DEFINE_{kind}")(name, default, help=help_text, **kwargs)
        _FLAG_NAMES.append(name)

    define("bool", "quick", False,
           "Quick variant: the same pipeline with small numbers (1 seed, 5 "
           "epochs, 2 sweep points, n=120, AutoAttack fast, RayS 500 queries, "
           "iterations 10,20,50). Flags given explicitly override these.")
    # Data and models.
    define("string", "dataset", "digits",
           "Data source: digits, tfds:<name>[:split], folder:<path>, idx:<path>.")
    define("string", "data_dir", None, "TFDS data folder (tfds: only).")
    define("list", "image_size", [], "Resize images to H,W (or one number); empty keeps them.")
    define("integer", "data_seed", 0,
           "Seed of the train/test split of digits/folder sources (shared by "
           "all models, so gray/black-box sources see the same test set).", lower_bound=0)
    define("string", "model", "tiny",
           "Main architecture: tiny, resnet18, resnet34, resnet50, resnet101, resnet152.")
    define("list", "tiny_widths", ["8", "16", "16", "32"], "Filters per stage of the tiny ResNet.")
    define("string", "blackbox_model", "auto",
           "Architecture of the black-box sources: auto (tiny -> tiny_deep, "
           "resnet18 <-> resnet34, resnet101 -> resnet152, ...), tiny_deep "
           "(tiny ResNet with --blackbox_blocks blocks per stage), cnn (plain "
           "CNN, no residuals/BatchNorm), or a --model name.")
    define("list", "blackbox_blocks", ["2", "2", "2", "2"],
           "Blocks per stage of tiny_deep (the main tiny ResNet has 1,1,1,1).")
    define("list", "methods", list(DEFAULT_METHODS), "Presets to train and compare.")
    define("list", "seeds", ["0", "1", "2"], "Seeds of the main models (one model per method and seed).")
    define("integer", "source_seed", 100,
           "Seed of the gray-box and black-box source models (not in --seeds).", lower_bound=0)
    # Training recipe (the same for every model).
    define("string", "eps", "0.2", "Training L-inf radius on the [0, 1] scale (decimal or a/b).")
    define("string", "step_size", "0.05", "Training PGD step (decimal or a/b).")
    define("integer", "num_steps", 0,
           "Training attack steps; 0 = the preset's (7; TRADES 10).", lower_bound=0)
    define("integer", "epochs", 20, "Epochs of every model.", lower_bound=1)
    define("integer", "batch_size", 64, "Global training batch.", lower_bound=1)
    define("enum", "optimizer", "sgd", "Optimizer.", enum_values=["sgd", "adam"])
    define("float", "learning_rate", 0.05, "Initial learning rate.")
    define("float", "momentum", 0.9, "SGD momentum.")
    define("enum", "lr_schedule", "cosine", "Learning-rate schedule.",
           enum_values=["constant", "cosine"])
    define("float", "weight_decay", 5e-4, "Coupled L2 factor on all kernels.")
    define("enum", "augment", "none", "Training augmentation.",
           enum_values=["none", "crop", "crop_flip"])
    # Sweep.
    define("bool", "sweep", True, "Sweep the AT and ALP weights of at_alp (else use the presets').")
    define("list", "at_weights", ["0.1", "0.3", "1", "3"], "AT weights tried (ALP at the preset's 0.5).")
    define("list", "alp_weights", ["0.1", "0.5", "1.0"], "ALP weights tried at the chosen AT weight.")
    define("float", "val_fraction", 0.2, "Fraction of the TRAINING set held out for the sweep.")
    define("integer", "max_val_examples", 1000, "Cap on validation images scored (0 = all).",
           lower_bound=0)
    # Evaluation.
    define("list", "eval_eps", ["0.2", "0.3"], "Evaluation radii (the training eps and a larger one).")
    define("integer", "num_test", 0, "Test images evaluated (a fixed random subset; 0 = all).",
           lower_bound=0)
    define("integer", "pgd_steps", 20, "White-box PGD steps.", lower_bound=1)
    define("integer", "pgd_restarts", 5, "White-box PGD restarts (worst per example).", lower_bound=1)
    define("enum", "autoattack", "standard",
           "AutoAttack version (standard: APGD-CE, APGD-T, FAB-T, Square; fast: the APGDs).",
           enum_values=["standard", "fast"])
    define("integer", "rays_queries", 1000, "RayS label queries per example.", lower_bound=1)
    define("list", "iterations", ["10", "20", "50", "100", "200"],
           "PGD iterations of the white/gray/black-box curves.")
    define("string", "iter_step_size", "1/256", "PGD step of those curves (the paper's 1/256).")
    define("list", "curve_eps", ["0.05", "0.1", "0.15", "0.25"],
           "Extra radii of the accuracy-vs-eps curve (PGD-20, 1 restart); empty skips them.")
    define("integer", "attack_seed", 0, "Seed of the attacks' random starts.", lower_bound=0)
    define("integer", "eval_batch_size", 512, "Images per attack call.", lower_bound=1)
    # Figures.
    define("integer", "attention_images", 3, "Test images in the attention figure.", lower_bound=1)
    define("integer", "landscape_images", 16, "Test images the loss landscape averages.",
           lower_bound=1)
    define("integer", "landscape_points", 21, "Grid points per axis of the landscape.",
           lower_bound=3)
    # Outputs.
    define("string", "out", "runs/reproduce",
           "Folder of models, evaluations and JSON (--quick: runs/reproduce_quick).")
    define("string", "report", "docs/results.md", "Markdown report to write.")
    define("string", "figures_dir", "",
           "Folder of the PNGs; empty = the report's path without '.md' (docs/results/).")


# --------------------------------------------------------------- settings


@dataclasses.dataclass
class Settings:
    """Every setting of a run, after the --quick defaults are applied."""

    quick: bool
    dataset: str
    data_dir: object
    image_size: object
    data_seed: int
    model: str
    tiny_widths: tuple
    blackbox_model: str
    blackbox_blocks: tuple
    methods: list
    seeds: list
    source_seed: int
    eps: float
    step_size: float
    num_steps: object
    epochs: int
    batch_size: int
    optimizer: str
    learning_rate: float
    momentum: float
    lr_schedule: str
    weight_decay: float
    augment: str
    sweep: bool
    at_weights: list
    alp_weights: list
    val_fraction: float
    max_val_examples: int
    eval_eps: list
    num_test: int
    pgd_steps: int
    pgd_restarts: int
    autoattack: str
    rays_queries: int
    iterations: list
    iter_step_size: float
    curve_eps: list
    attack_seed: int
    eval_batch_size: int
    attention_images: int
    landscape_images: int
    landscape_points: int
    out: str
    report: str
    figures_dir: str


def _flag_value(name):
    if FLAGS.quick and name in QUICK and not FLAGS[name].present:
        return QUICK[name]
    return FLAGS[name].value


def settings_from_flags():
    """Reads the flags (with the --quick defaults) into checked `Settings`."""
    from atalp_keras.cli import parse_eps
    from atalp_keras.methods import METHODS

    def ints(name):
        try:
            return [int(v) for v in _flag_value(name)]
        except ValueError:
            raise ValueError(f"--{name} must be comma-separated integers. Received: "
                             f"{name}={','.join(_flag_value(name))}") from None

    def floats(name):
        try:
            return [float(v) for v in _flag_value(name)]
        except ValueError:
            raise ValueError(f"--{name} must be comma-separated numbers. Received: "
                             f"{name}={','.join(_flag_value(name))}") from None

    methods = [m.strip() for m in _flag_value("methods") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if not methods or unknown:
        raise ValueError(f"--methods must list presets of {', '.join(METHODS)}. "
                         f"Received: methods={','.join(methods)}")
    seeds = ints("seeds")
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds must list distinct integers. Received: {seeds}")
    source_seed = _flag_value("source_seed")
    if source_seed in seeds:
        raise ValueError(f"--source_seed must differ from the main --seeds (a gray-box source "
                         f"is another model). Received: source_seed={source_seed}, seeds={seeds}")
    iterations = ints("iterations")
    if not iterations or sorted(set(iterations)) != iterations or iterations[0] < 1:
        raise ValueError(f"--iterations must be increasing positive integers. "
                         f"Received: {iterations}")
    eval_eps = [parse_eps(e, "eval_eps") for e in _flag_value("eval_eps")]
    if not eval_eps:
        raise ValueError("--eval_eps needs at least one radius.")
    eps = parse_eps(_flag_value("eps"), "eps")
    at_weights, alp_weights = floats("at_weights"), floats("alp_weights")
    if any(w < 0 for w in at_weights + alp_weights) or not at_weights or not alp_weights:
        raise ValueError("--at_weights and --alp_weights must be non-empty lists of numbers >= 0.")
    val_fraction = _flag_value("val_fraction")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"--val_fraction must be in (0, 1). Received: {val_fraction}")
    image_size = ints("image_size") or None
    if image_size is not None:
        image_size = tuple(image_size * (2 // len(image_size)))
    blackbox = _flag_value("blackbox_model")
    model = _flag_value("model")
    if blackbox == "auto":
        if model not in AUTO_BLACKBOX:
            raise ValueError(f"--blackbox_model=auto knows no partner for model {model!r}; "
                             f"name one. Received: model={model!r}")
        blackbox = AUTO_BLACKBOX[model]
    if blackbox == model:
        raise ValueError(f"The black-box source must be another architecture than --model. "
                         f"Received: model={model!r}, blackbox_model={blackbox!r}")
    report = _flag_value("report")
    figures_dir = _flag_value("figures_dir") or os.path.splitext(report)[0]
    return Settings(
        quick=bool(FLAGS.quick), dataset=_flag_value("dataset"), data_dir=_flag_value("data_dir"),
        image_size=image_size, data_seed=_flag_value("data_seed"), model=model,
        tiny_widths=tuple(ints("tiny_widths")), blackbox_model=blackbox,
        blackbox_blocks=tuple(ints("blackbox_blocks")), methods=methods, seeds=seeds,
        source_seed=source_seed, eps=eps, step_size=parse_eps(_flag_value("step_size"), "step_size"),
        num_steps=_flag_value("num_steps") or None, epochs=_flag_value("epochs"),
        batch_size=_flag_value("batch_size"), optimizer=_flag_value("optimizer"),
        learning_rate=_flag_value("learning_rate"), momentum=_flag_value("momentum"),
        lr_schedule=_flag_value("lr_schedule"), weight_decay=_flag_value("weight_decay"),
        augment=_flag_value("augment"), sweep=_flag_value("sweep"), at_weights=at_weights,
        alp_weights=alp_weights, val_fraction=val_fraction,
        max_val_examples=_flag_value("max_val_examples"), eval_eps=eval_eps,
        num_test=_flag_value("num_test"), pgd_steps=_flag_value("pgd_steps"),
        pgd_restarts=_flag_value("pgd_restarts"), autoattack=_flag_value("autoattack"),
        rays_queries=_flag_value("rays_queries"), iterations=iterations,
        iter_step_size=parse_eps(_flag_value("iter_step_size"), "iter_step_size"),
        curve_eps=[parse_eps(e, "curve_eps") for e in _flag_value("curve_eps")],
        attack_seed=_flag_value("attack_seed"), eval_batch_size=_flag_value("eval_batch_size"),
        attention_images=_flag_value("attention_images"),
        landscape_images=_flag_value("landscape_images"),
        landscape_points=_flag_value("landscape_points"), out=_flag_value("out"),
        report=report, figures_dir=figures_dir)


# ----------------------------------------------------------- small helpers


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def write_json(path, value):
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    temp = f"{path}.tmp-{os.getpid()}"
    with open(temp, "w") as handle:
        json.dump(value, handle, indent=2, default=_json_default)
    os.replace(temp, path)
    return path


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def read_json(path):
    with open(path) as handle:
        return json.load(handle)


def fmt_eps(eps):
    from atalp_keras.evaluation import format_eps

    return format_eps(float(eps))


def fmt_weight(value):
    return f"{value:g}"


# ----------------------------------------------------- statistics and text


@dataclasses.dataclass
class Stat:
    """Accuracy over seeds: ``mean``/``std`` are fractions; ``std`` is None
    for a single seed; ``n`` is the number of test images behind each value."""

    values: list
    n: int

    @property
    def mean(self):
        return float(np.mean(self.values)) if self.values else float("nan")

    @property
    def std(self):
        return float(np.std(self.values, ddof=1)) if len(self.values) > 1 else None

    @property
    def k(self):
        return len(self.values)

    def binomial_se(self):
        p = min(max(self.mean, 0.0), 1.0)
        return math.sqrt(p * (1 - p) / max(self.n, 1))

    def cell(self):
        if not self.values:
            return "-"
        if self.std is None:
            return f"{100 * self.mean:.1f}"
        return f"{100 * self.mean:.1f} ± {100 * self.std:.1f}"


def tolerance(a, b):
    """The difference below which two accuracies are called a tie.

    With several seeds: the larger of the two standard deviations over seeds.
    With one seed: the combined binomial standard error of the two test-set
    estimates. Never below one test image (1/n).
    """
    floor = 1.0 / max(a.n, b.n, 1)
    if a.k >= 2 and b.k >= 2:
        return max(a.std, b.std, floor)
    return max(math.sqrt(a.binomial_se() ** 2 + b.binomial_se() ** 2), floor)


def compare(a, b):
    """+1 if ``a`` beats ``b`` by more than `tolerance`, -1 if it trails, else 0."""
    if not a.values or not b.values:
        return 0
    diff = a.mean - b.mean
    if abs(diff) <= tolerance(a, b) + 1e-12:
        return 0
    return 1 if diff > 0 else -1


def points(a, b):
    return f"{100 * (a.mean - b.mean):+.1f} points"


def select_best(grid, key="val_robust", tie_key="val_clean"):
    """The grid entry with the highest ``key``; ``tie_key`` breaks exact ties,
    then the earlier entry wins.

    Args:
        grid: A list of dicts holding ``key`` and ``tie_key`` (numbers).

    Returns:
        The chosen dict.

    Raises:
        ValueError: For an empty grid or entries without the keys.
    """
    if not grid:
        raise ValueError("The sweep grid is empty. Received: grid=[]")
    for entry in grid:
        if key not in entry or tie_key not in entry:
            raise ValueError(f"Every grid entry needs {key!r} and {tie_key!r}. "
                             f"Received: {entry!r}")
    best = grid[0]
    for entry in grid[1:]:
        if (entry[key], entry[tie_key]) > (best[key], best[tie_key]):
            best = entry
    return best


# ---------------------------------------------------------------- training


def _train_config(s, method, seed, model_dir, model=None, at_weight=None, alp_weight=None,
                  max_train_examples=0):
    from atalp_keras import training

    return training.TrainConfig(
        dataset=s.dataset, data_dir=s.data_dir, image_size=s.image_size, data_seed=s.data_seed,
        max_train_examples=max_train_examples, augment=s.augment, model=model or s.model,
        tiny_widths=s.tiny_widths, method=method, eps=s.eps, step_size=s.step_size,
        num_steps=s.num_steps, at_weight=at_weight, alp_weight=alp_weight,
        eval_pgd_steps=0,  # Evaluated here, with the full suite.
        epochs=s.epochs, batch_size=s.batch_size, optimizer=s.optimizer,
        learning_rate=s.learning_rate, momentum=s.momentum, lr_schedule=s.lr_schedule,
        weight_decay=s.weight_decay, seed=seed, model_dir=model_dir, export=False, verbose=0)


_COMPARED_CONFIG = ("dataset", "data_seed", "max_train_examples", "augment", "model",
                    "tiny_widths", "method", "eps", "step_size", "num_steps", "at_weight",
                    "alp_weight", "epochs", "batch_size", "optimizer", "learning_rate",
                    "momentum", "lr_schedule", "weight_decay", "seed")


def train_model(config, label, ledger=None):
    """Trains ``config`` unless its folder holds that finished model already.

    Args:
        config: A `training.TrainConfig`.
        label: Name used in the progress lines.
        ledger: Optional dict counting ``trained``/``reused`` models and the
            summed ``train_seconds`` of all of them (from their metrics).

    Returns:
        ``(metrics, reused)``.
    """
    from atalp_keras import training

    wanted = json.loads(json.dumps(dataclasses.asdict(config.validate()), default=str))
    metrics_path = os.path.join(config.model_dir, training.METRICS_FILE)
    classifier_path = os.path.join(config.model_dir, training.CLASSIFIER_FILE)
    if os.path.isfile(metrics_path) and os.path.isfile(classifier_path):
        metrics = read_json(metrics_path)
        stored = metrics.get("config", {})
        for key in _COMPARED_CONFIG:
            if stored.get(key) != wanted.get(key):
                raise ValueError(
                    f"{config.model_dir} holds a model trained with {key}={stored.get(key)!r}, "
                    f"but this run wants {key}={wanted.get(key)!r}. Use another --out (or "
                    f"delete that folder) to train with the new settings.")
        log(f"reuse {label} ({config.model_dir})")
        _count(ledger, "reused", metrics.get("seconds", 0.0), "train_seconds")
        return metrics, True
    started = time.time()
    metrics = training.train(config)
    log(f"trained {label}: {time.time() - started:.0f} s, clean test accuracy "
        f"{100 * metrics['test']['accuracy']:.1f}%")
    import keras

    keras.backend.clear_session()
    _count(ledger, "trained", metrics.get("seconds", 0.0), "train_seconds")
    return metrics, False


def _count(ledger, key, seconds, seconds_key):
    if ledger is not None:
        ledger[key] = ledger.get(key, 0) + 1
        ledger[seconds_key] = ledger.get(seconds_key, 0.0) + float(seconds or 0.0)


def blackbox_model_spec(s, info, seed, folder):
    """The ``TrainConfig.model`` of a black-box source: a registered name, or
    a freshly initialised ``.keras`` file for architectures TrainConfig cannot
    build by name (``tiny_deep``, ``cnn``), seeded with ``seed``."""
    import keras

    from atalp_keras import backbones, training

    if s.blackbox_model in training.MODEL_NAMES:
        return s.blackbox_model
    path = os.path.join(folder, f"{s.blackbox_model}_seed{seed}.keras")
    if os.path.isfile(path):
        return path
    keras.utils.set_random_seed(seed)
    if s.blackbox_model == "tiny_deep":
        if len(s.blackbox_blocks) != len(s.tiny_widths):
            raise ValueError(f"--blackbox_blocks needs one count per stage "
                             f"({len(s.tiny_widths)}). Received: {s.blackbox_blocks}")
        # Like backbones.tiny_resnet, with more blocks per stage.
        model = backbones.basic_resnet(
            info.input_shape, info.num_classes, s.blackbox_blocks, s.tiny_widths,
            (1, 2, 2, 1), stem_width=s.tiny_widths[0], bn_momentum=0.9,
            name="tiny_resnet_deep")
    elif s.blackbox_model == "cnn":
        model = backbones.build_backbone("cnn", info.input_shape, info.num_classes)
    else:
        raise ValueError(f"Unknown --blackbox_model {s.blackbox_model!r}. Expected auto, "
                         f"tiny_deep, cnn or one of {', '.join(training.MODEL_NAMES)}.")
    os.makedirs(folder, exist_ok=True)
    temp = path[:-len(".keras")] + f".tmp-{os.getpid()}.keras"
    model.save(temp)
    os.replace(temp, path)
    keras.backend.clear_session()
    return path


def epoch_seconds(metrics):
    """``(first, steady)``: the first epoch (includes graph tracing) and the
    mean of the later ones (the per-epoch cost)."""
    seconds = [row["seconds"] for row in metrics.get("history", []) if "seconds" in row]
    if not seconds:
        return None, None
    steady = seconds[1:] or seconds
    return float(seconds[0]), float(np.mean(steady))


# ------------------------------------------------------------------- sweep


def validation_split(info, val_fraction, seed, data_seed):
    """Splits the training set into the sweep's training part and validation.

    ``TrainConfig.max_train_examples`` trains on a fixed random subset chosen
    by ``training._subset`` after ``keras.utils.set_random_seed(seed)``; the
    same call on an index dataset of the same size gives that subset's
    indices, and validation is the rest, so validation never meets training
    (nor the test set, which is another split).

    Returns:
        ``(num_sweep_train, val_indices)``.
    """
    import keras
    import tensorflow as tf

    from atalp_keras import training

    num_train = info.num_train
    num_val = max(1, int(round(val_fraction * num_train)))
    limit = num_train - num_val
    if limit < 1:
        raise ValueError(f"--val_fraction={val_fraction} leaves no training examples "
                         f"of {num_train}.")
    keras.utils.set_random_seed(seed)
    subset, _ = training._subset(tf.data.Dataset.range(num_train), limit, num_train, data_seed)
    train_idx = np.fromiter(subset.as_numpy_iterator(), np.int64)
    val_idx = np.setdiff1d(np.arange(num_train), train_idx)
    if len(val_idx) != num_val or len(np.unique(train_idx)) != limit:
        raise RuntimeError("The validation split does not complement the training subset; "
                           "training._subset changed. Fix validation_split().")
    return limit, val_idx


def validation_arrays(info, val_idx, limit):
    import tensorflow as tf

    from atalp_keras import data

    keep = np.zeros(info.num_train, bool)
    keep[val_idx] = True
    keep = tf.constant(keep)
    dataset = info.train.enumerate().filter(lambda i, example: tf.gather(keep, i))
    dataset = dataset.map(lambda i, example: example)
    x, y = data.to_numpy(dataset, limit=limit or None)
    return x.astype(np.float32), y.astype(np.int32)


def score_on_validation(model_dir, x_val, y_val, s):
    """Clean and PGD-20 accuracy at the training eps on the validation split."""
    import keras

    from atalp_keras import evaluation

    path = os.path.join(model_dir, "validation.json")
    if os.path.isfile(path):
        return read_json(path)
    model, _ = evaluation.load_model_for_eval(model_dir)
    attacks = evaluation.build_attacks([("pgd", {"num_steps": 20, "restarts": 1})], [s.eps],
                                       seed=s.attack_seed)
    records = evaluation.evaluate_model(model, x_val, y_val, attacks,
                                        batch_size=s.eval_batch_size, verbose=0)
    result = {"val_clean": records[0]["accuracy"], "val_robust": records[1]["accuracy"],
              "val_n": records[0]["n"], "attack": records[1]}
    keras.backend.clear_session()
    return read_json(write_json(path, result))


def run_sweep(s, info, ledger=None):
    """Stage 1: AT weights (ALP at the preset's); stage 2: ALP weights at the
    chosen AT weight. Returns the sweep summary (also in ``out/sweep.json``)."""
    from atalp_keras.methods import get_method

    preset = get_method("at_alp")
    seed = s.seeds[0]
    limit, val_idx = validation_split(info, s.val_fraction, seed, s.data_seed)
    x_val, y_val = validation_arrays(info, val_idx, s.max_val_examples)
    log(f"sweep: {limit} training / {len(val_idx)} validation images (scored: {len(y_val)}), "
        f"seed {seed}")
    points_done = {}

    def point(at_weight, alp_weight, stage):
        key = (at_weight, alp_weight)
        if key in points_done:
            entry = dict(points_done[key])
            entry["stages"] = sorted(set(entry["stages"]) | {stage})
            points_done[key] = entry
            return entry
        name = f"at{fmt_weight(at_weight)}_alp{fmt_weight(alp_weight)}"
        model_dir = os.path.join(s.out, "sweep", name)
        config = _train_config(s, "at_alp", seed, model_dir, at_weight=at_weight,
                               alp_weight=alp_weight, max_train_examples=limit)
        metrics, _ = train_model(config, f"sweep {name}", ledger)
        scores = score_on_validation(model_dir, x_val, y_val, s)
        first, steady = epoch_seconds(metrics)
        entry = {"name": name, "at_weight": at_weight, "alp_weight": alp_weight,
                 "val_clean": scores["val_clean"], "val_robust": scores["val_robust"],
                 "val_n": scores["val_n"], "epoch_seconds": steady, "stages": [stage]}
        log(f"sweep {name}: validation clean {100 * entry['val_clean']:.1f}%, "
            f"PGD-20 {100 * entry['val_robust']:.1f}%")
        points_done[key] = entry
        return entry

    stage1 = [point(w, preset.alp_weight, 1) for w in s.at_weights]
    best_at = select_best(stage1)["at_weight"]
    alp_values = list(dict.fromkeys(list(s.alp_weights) + [preset.alp_weight]))
    stage2 = [point(best_at, w, 2) for w in alp_values]
    best = select_best(stage2)
    summary = {
        "method": "at_alp", "seed": seed, "train_examples": limit,
        "val_examples": int(len(val_idx)), "val_scored": int(len(y_val)),
        "criterion": (f"PGD-20 accuracy (1 restart, step 2.5*eps/20) at the training eps "
                      f"{fmt_eps(s.eps)} on the validation split; clean accuracy breaks ties"),
        "preset": {"at_weight": preset.at_weight, "alp_weight": preset.alp_weight},
        "stage1": [points_done[(w, preset.alp_weight)] for w in s.at_weights],
        "stage2": [points_done[(best_at, w)] for w in alp_values],
        "grid": list(points_done.values()),
        "chosen": {"at_weight": best["at_weight"], "alp_weight": best["alp_weight"],
                   "val_robust": best["val_robust"], "val_clean": best["val_clean"]},
        "at_edge": best_at in (min(s.at_weights), max(s.at_weights)) and len(s.at_weights) > 1,
        "alp_edge": best["alp_weight"] in (min(alp_values), max(alp_values))
        and len(alp_values) > 1,
    }
    write_json(os.path.join(s.out, "sweep.json"), summary)
    return summary


# -------------------------------------------------------------- evaluation


def build_suite(s, num_classes):
    """The white-box attacks, each at every --eval_eps (own settings each, so
    no suite-wide num_steps reaches AutoAttack)."""
    from atalp_keras import evaluation

    aa_name = "autoattack" if s.autoattack == "standard" else "autoattack-fast"
    requests = [
        ("fgsm", {}),
        ("pgd", {"num_steps": s.pgd_steps, "restarts": s.pgd_restarts}),
        (aa_name, {"n_target_classes": max(1, min(9, num_classes - 1))}),
        ("rays", {"n_queries": s.rays_queries}),
    ]
    return evaluation.build_attacks(requests, s.eval_eps, seed=s.attack_seed)


def evaluate_main(s, entry, x, y, sources, info, ledger=None):
    """Full suite on one main model; cached in ``out/eval/<name>.json``."""
    import keras

    from atalp_keras import analysis, evaluation

    path = os.path.join(s.out, "eval", f"{entry['name']}.json")
    if os.path.isfile(path):
        cached = read_json(path)
        if cached.get("n") == len(y) and cached.get("settings_key") == _eval_key(s):
            log(f"reuse evaluation of {entry['name']}")
            _count(ledger, "eval_reused", cached.get("seconds", 0.0), "eval_seconds")
            return cached
    started = time.time()
    model, _ = evaluation.load_model_for_eval(entry["dir"])
    attacks = build_suite(s, info.num_classes)
    records = evaluation.evaluate_model(model, x, y, attacks, batch_size=s.eval_batch_size,
                                        verbose=0, model_name=entry["name"],
                                        method=entry["method"])
    extras = {}
    for record in records:  # the attacks' extras, summarised in their records
        key = f"{record['attack']}@{record['eps']!r}"
        if record["attack"] == "rays":
            extras[key] = {"mean_distance": record["mean_distance"],
                           "mean_queries": record["mean_queries"]}
        elif record["attack"].startswith("autoattack"):
            extras[key] = {"stages": record["stages"]}
    curves = []
    for setting, (label, source) in [("white", (entry["name"], None))] + list(sources.items()):
        curve = analysis.robust_accuracy_vs_iterations(
            model, x, y, s.eval_eps, iterations=s.iterations, step_size=s.iter_step_size,
            source=source, seed=s.attack_seed, restarts=1, batch_size=s.eval_batch_size,
            target_name=entry["name"], source_name=label)
        for record in curve:
            record["threat"] = setting
        curves += curve
    eps_curve = []
    curve_eps = sorted(set(s.curve_eps) | set(s.eval_eps))
    if s.curve_eps:
        pgd = evaluation.build_attacks([("pgd", {"num_steps": s.pgd_steps, "restarts": 1})],
                                       curve_eps, seed=s.attack_seed)
        eps_curve = evaluation.evaluate_model(model, x, y, pgd, batch_size=s.eval_batch_size,
                                              verbose=0, model_name=entry["name"],
                                              method=entry["method"])
        eps_curve = [r for r in eps_curve if r["attack"] in ("none", "pgd")]
    result = {"name": entry["name"], "method": entry["method"], "seed": entry["seed"],
              "n": int(len(y)), "settings_key": _eval_key(s), "records": records,
              "attack_extras": extras, "iterations": curves, "eps_curve": eps_curve,
              "seconds": round(time.time() - started, 1)}
    write_json(path, result)
    _count(ledger, "evaluated", result["seconds"], "eval_seconds")
    pgd_acc = {r["eps"]: r["accuracy"] for r in records if r["attack"] == "pgd"}
    log(f"evaluated {entry['name']} in {result['seconds']:.0f} s: clean "
        f"{100 * records[0]['accuracy']:.1f}%, PGD "
        + ", ".join(f"eps {fmt_eps(e)} {100 * a:.1f}%" for e, a in pgd_acc.items()))
    del model
    keras.backend.clear_session()
    return result


def _eval_key(s):
    """The settings an evaluation depends on (a cached one must match)."""
    return json.dumps({k: getattr(s, k) for k in (
        "eval_eps", "num_test", "pgd_steps", "pgd_restarts", "autoattack", "rays_queries",
        "iterations", "iter_step_size", "curve_eps", "attack_seed")}, sort_keys=True)


# ----------------------------------------------------------- aggregation


ATTACK_KEYS = ("clean", "fgsm", "pgd", "autoattack", "rays", "worst-case")


def per_model_values(result, s):
    """Flat ``{(metric, eps): accuracy}`` of one evaluated model."""
    values = {}
    for r in result["records"]:
        attack = r["attack"]
        if attack == "none":
            for eps in s.eval_eps:
                values[("clean", eps)] = r["accuracy"]
        elif attack.startswith("autoattack"):
            values[("autoattack", r["eps"])] = r["accuracy"]
        elif attack in ("fgsm", "pgd", "rays", "worst-case"):
            values[(attack, r["eps"])] = r["accuracy"]
    for r in result["iterations"]:
        values[(f"{r['threat']}@{r['num_steps']}", r["eps"])] = r["accuracy"]
    for r in result.get("eps_curve", []):
        if r["attack"] == "pgd":
            values[("pgd1", r["eps"])] = r["accuracy"]
    for key, extra in result.get("attack_extras", {}).items():
        if key.startswith("rays@"):
            values[("rays_distance", float(key.split("@")[1]))] = extra["mean_distance"]
    return values


def aggregate(results, s, n):
    """``{method: {(metric, eps): Stat}}`` over the seeds of each method."""
    table = {}
    for method in s.methods:
        per_seed = [per_model_values(r, s) for r in results if r["method"] == method]
        keys = set().union(*per_seed) if per_seed else set()
        table[method] = {key: Stat([v[key] for v in per_seed if key in v], n)
                         for key in keys}
    return table


# ----------------------------------------------------------------- figures


def make_figures(s, info, x, y, main_models, agg):
    """Writes the PNGs; returns ``{name: path}``."""
    import keras

    from atalp_keras import analysis, evaluation, plots
    from atalp_keras.attacks import PGDAttack
    from atalp_keras.features import resolve_stage_layers

    os.makedirs(s.figures_dir, exist_ok=True)
    figures = {}
    first_seed = {m["method"]: m for m in main_models if m["seed"] == s.seeds[0]}

    # Attention maps of the same images for every method (seed-0 models),
    # each attacked white-box with PGD-20 at the training eps.
    k = min(s.attention_images, len(x))
    panels = []
    attack = PGDAttack(s.eps, num_steps=20, seed=s.attack_seed)
    for method in s.methods:
        model, _ = evaluation.load_model_for_eval(first_seed[method]["dir"])
        x_adv = attack.perturb(model, x[:k], y[:k], batch_size=s.eval_batch_size)
        maps = analysis.attention_maps(model, x[:k])
        maps_adv = analysis.attention_maps(model, x_adv)
        panels.append({
            "name": method, "images_adv": x_adv,
            "stage_names": resolve_stage_layers(model),
            "maps": maps, "maps_adv": maps_adv,
            "pred": np.argmax(np.asarray(model(x[:k], training=False)), -1),
            "pred_adv": np.argmax(np.asarray(model(x_adv, training=False)), -1)})
    figures["attention"] = plots.plot_attention_grid(
        x[:k], panels, os.path.join(s.figures_dir, "attention.png"), labels=y[:k],
        class_names=info.class_names,
        title=(f"{info.name}: white-box PGD-20 at eps {fmt_eps(s.eps)} (step "
               f"{attack.step_size:.4g}) on each method's seed-{s.seeds[0]} model"))
    keras.backend.clear_session()

    # Accuracy against PGD iterations, mean over seeds, one figure per threat.
    for threat, title in (("white", "white-box"), ("gray", "gray-box (same arch., other seed)"),
                          ("black", f"black-box (source: {s.blackbox_model})")):
        records = []
        for method in s.methods:
            for eps in s.eval_eps:
                for it in s.iterations:
                    stat = agg[method].get((f"{threat}@{it}", eps))
                    if stat is None or not stat.values:
                        continue
                    records.append({"eps": eps, "num_steps": it, "accuracy": stat.mean,
                                    "step_size": s.iter_step_size,
                                    "setting": "white" if threat == "white" else "transfer",
                                    "source": method if threat == "white" else threat,
                                    "target": method})
        if records:
            figures[f"iterations_{threat}"] = plots.plot_accuracy_vs_iterations(
                records, os.path.join(s.figures_dir, f"iterations_{threat}.png"),
                title=f"{info.name}: {title} PGD, mean over {len(s.seeds)} seed(s), "
                      f"n={len(y)}")

    # Loss landscape of each method's seed-0 model.
    m = min(s.landscape_images, len(x))
    eps_max = max(s.eval_eps)
    grid = np.linspace(-eps_max, eps_max, s.landscape_points)
    if s.landscape_points % 2:
        grid[s.landscape_points // 2] = 0.0
    landscapes = {}
    for method in s.methods:
        model, _ = evaluation.load_model_for_eval(first_seed[method]["dir"])
        landscapes[method] = analysis.loss_landscape(model, x[:m], y[:m], grid=grid,
                                                     seed=s.attack_seed,
                                                     batch_size=s.eval_batch_size)
        keras.backend.clear_session()
    write_json(os.path.join(s.out, "landscapes.json"),
               {name: {"a": a, "b": b, "z": z} for name, (a, b, z) in landscapes.items()})
    figures["landscape"] = plots.plot_loss_landscape(
        landscapes, os.path.join(s.figures_dir, "landscape.png"), kind="surface",
        title=f"{info.name}: mean CE over {m} test images, a along sign(grad), b Rademacher")

    # Accuracy against eps (PGD-20, 1 restart), mean over seeds.
    if s.curve_eps:
        records = []
        for method in s.methods:
            clean = agg[method].get(("clean", s.eval_eps[0]))
            if clean is not None:
                records.append({"model": method, "attack": "PGD-20", "eps": 0.0,
                                "accuracy": clean.mean})
            for eps in sorted(set(s.curve_eps) | set(s.eval_eps)):
                stat = agg[method].get(("pgd1", eps))
                if stat is not None and stat.values:
                    records.append({"model": method, "attack": "PGD-20", "eps": eps,
                                    "accuracy": stat.mean})
        if records:
            figures["accuracy_vs_eps"] = plots.plot_accuracy_vs_eps(
                records, os.path.join(s.figures_dir, "accuracy_vs_eps.png"),
                title=f"{info.name}: white-box PGD-20 (1 restart), mean over seeds, n={len(y)}")
    return figures


# ------------------------------------------------------------------ report


def machine_info():
    import keras
    import tensorflow as tf

    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    versions = {"python": platform.python_version(), "tensorflow": tf.__version__,
                "keras": keras.__version__, "numpy": np.__version__}
    for name in ("sklearn", "matplotlib"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            pass
    gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    return {"nproc": cores, "cpu": cpu, "gpus": gpus or ["none"], "versions": versions,
            "platform": platform.platform()}


def git_state():
    try:
        commit = subprocess.run(["git", "-C", _REPO, "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip() or "unknown"
        dirty = subprocess.run(["git", "-C", _REPO, "status", "--porcelain"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown", False
    return commit, bool(dirty)


def _md_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _label(method):
    return f"`{method}`"


def attack_settings(s, num_classes):
    """Human-readable settings of every attack column."""
    pgd_step = 2.5 / s.pgd_steps  # times eps (the library's evaluation default)
    aa = ("APGD-CE (100 steps), APGD-T ({t} targets x 100 steps), FAB-T ({t} targets x 100 "
          "steps), Square (5000 queries)" if s.autoattack == "standard"
          else "APGD-CE (100 steps), APGD-T ({t} targets x 100 steps)").format(
              t=max(1, min(9, num_classes - 1)))
    return {
        "fgsm": "FGSM: one signed-gradient step of size eps, no random start",
        "pgd": (f"PGD-{s.pgd_steps}x{s.pgd_restarts}: {s.pgd_steps} steps of "
                f"{pgd_step:g}*eps, random start, {s.pgd_restarts} restarts (worst per image)"),
        "autoattack": f"AutoAttack {s.autoattack}: {aa}",
        "rays": (f"RayS: hard-label (predicted class only), {s.rays_queries} queries per image, "
                 f"early stop at eps"),
        "worst-case": "worst case: an image counts as robust only if clean, FGSM, PGD, "
                      "AutoAttack and RayS all fail on it",
        "transfer": (f"gray/black box: PGD-k with step {fmt_eps(s.iter_step_size)} (= "
                     f"{s.iter_step_size:.4g}), random start, 1 restart, made on the source "
                     f"model and evaluated on the target (no query to the target)"),
    }


def discussion(s, agg, sweep, timing, n):
    """Paragraphs of text derived from the numbers (see `compare`)."""
    out = []
    eps0 = s.eps if s.eps in s.eval_eps else s.eval_eps[0]
    kmax = s.iterations[-1]
    methods = s.methods

    def stat(method, metric, eps=eps0):
        return agg[method].get((metric, eps), Stat([], n))

    tied_word = "within one std" if len(s.seeds) > 1 else "within one standard error"

    def cmp_word(c):
        return {1: "higher than", -1: "lower than", 0: f"{tied_word} of"}[c]

    rule = ("Rule used below: two means are called different only when they differ by "
            "more than the larger standard deviation over seeds")
    if len(s.seeds) < 2:
        rule = ("Rule used below (one seed, so no spread over seeds is known): two accuracies "
                "are called different only when they differ by more than their combined "
                "binomial standard error on the test sample")
    out.append(rule + f" (and at least one test image, 1/n = {100 / n:.2f} points). "
               "Everything below is generated from the tables above.")

    # Ordering by the strongest white-box evaluation.
    headline = "autoattack"
    ranked = sorted(methods, key=lambda m: -stat(m, headline).mean)
    pairs = [f"{_label(a)} > {_label(b)}" for i, a in enumerate(ranked) for b in ranked[i + 1:]
             if compare(stat(a, headline), stat(b, headline)) > 0]
    total_pairs = len(ranked) * (len(ranked) - 1) // 2
    out.append(f"**Ordering as measured** (AutoAttack {s.autoattack} accuracy at the training "
               f"eps {fmt_eps(eps0)}, %, by mean): "
               + ", ".join(f"{_label(m)} {stat(m, headline).cell()}" for m in ranked)
               + ". Pairs that differ beyond the rule: "
               + (", ".join(pairs) if pairs else "none")
               + f" ({len(pairs)} of {total_pairs}); every other pair is a tie at this "
               "number of seeds and test images.")
    ranked_clean = sorted(methods, key=lambda m: -stat(m, "clean").mean)
    out.append("By clean accuracy: " + ", ".join(
        f"{_label(m)} {stat(m, 'clean').cell()}" for m in ranked_clean) + ".")

    # AT+ALP against every other method.
    if "at_alp" in methods and len(methods) > 1:
        metrics = [("clean", "clean"), ("fgsm", "FGSM"),
                   ("pgd", f"PGD-{s.pgd_steps}x{s.pgd_restarts}"),
                   ("autoattack", "AutoAttack"), ("rays", "RayS"),
                   (f"gray@{kmax}", f"gray PGD-{kmax}"),
                   (f"black@{kmax}", f"black PGD-{kmax}")]
        others = [m for m in methods if m != "at_alp"]
        word = {1: "higher", -1: "lower", 0: "tie"}
        for eps in s.eval_eps:
            rows = []
            for other in others:
                row = [_label(other)]
                for key, _ in metrics:
                    a, b = stat("at_alp", key, eps), stat(other, key, eps)
                    row.append("-" if not a.values or not b.values else
                               f"{100 * (a.mean - b.mean):+.1f} ({word[compare(a, b)]})")
                rows.append(row)
            out.append(f"`at_alp` minus each other method at eps {fmt_eps(eps)} (accuracy "
                       f"points; `higher`/`lower` = beyond the rule, `tie` = within it):\n\n"
                       + _md_table(["other method"] + [name for _, name in metrics], rows))

        def split(metric):
            a = stat("at_alp", metric)
            above = [o for o in others if compare(a, stat(o, metric)) > 0]
            below = [o for o in others if compare(a, stat(o, metric)) < 0]
            tie = [o for o in others if o not in above and o not in below]
            return above, below, tie

        def listing(names, empty):
            return ", ".join(map(_label, names)) or empty

        above, below, tie = split("autoattack")
        summary = (f"**Where AT+ALP helps and where it does not.** Under AutoAttack at eps "
                   f"{fmt_eps(eps0)} it is measurably above {listing(above, 'no other method')}"
                   f", measurably below {listing(below, 'no other method')}, and tied with "
                   f"{listing(tie, 'no other method')}.")
        above, below, tie = split("clean")
        summary += (f" On clean accuracy it is above {listing(above, 'none')}, below "
                    f"{listing(below, 'none')}, tied with {listing(tie, 'none')}.")
        for threat in ("gray", "black"):
            above, below, tie = split(f"{threat}@{kmax}")
            summary += (f" Against {threat}-box PGD-{kmax} it is above "
                        f"{listing(above, 'none')}, below {listing(below, 'none')}, tied with "
                        f"{listing(tie, 'none')}.")
        if "alp" in methods:
            a, b = stat("at_alp", "autoattack"), stat("alp", "autoattack")
            summary += (" The attention term's own contribution (`at_alp` against `alp`, which "
                        f"differ only by it): AutoAttack accuracy {points(a, b)}, "
                        f"{cmp_word(compare(a, b))} `alp`'s.")
        if "pat" in methods and timing.get("at_alp") and timing.get("pat"):
            ratio = timing["at_alp"] / timing["pat"]
            summary += (f" A training epoch of `at_alp` costs {ratio:.2f}x one of `pat` "
                        f"({timing['at_alp']:.2f} s vs {timing['pat']:.2f} s).")
        out.append(summary)

    # Gradient masking checks.
    flagged = []
    for method in methods:
        notes = []
        pgd, rays, aa = stat(method, "pgd"), stat(method, "rays"), stat(method, "autoattack")
        fgsm = stat(method, "fgsm")
        if compare(rays, pgd) < 0:
            notes.append(f"RayS (label-only) leaves {rays.cell()}% vs PGD's {pgd.cell()}%")
        if compare(aa, pgd) < 0 and aa.mean < pgd.mean - 0.05:
            notes.append(f"AutoAttack is more than 5 points below PGD ({aa.cell()} vs "
                         f"{pgd.cell()}): PGD-{s.pgd_steps} overestimates robustness")
        if compare(fgsm, pgd) < 0:
            notes.append(f"FGSM ({fgsm.cell()}) beats PGD ({pgd.cell()})")
        for threat in ("gray", "black"):
            t = stat(method, f"{threat}@{kmax}")
            if t.values and compare(t, pgd) < 0:
                notes.append(f"{threat}-box transfer ({t.cell()}) is stronger than white-box "
                             f"PGD ({pgd.cell()})")
        white_lo = stat(method, f"white@{s.iterations[0]}")
        white_hi = stat(method, f"white@{kmax}")
        if white_lo.values and white_hi.values and len(s.iterations) > 1 \
                and compare(white_hi, white_lo) > 0:
            notes.append(f"white-box PGD accuracy rises from {s.iterations[0]} to {kmax} "
                         f"steps ({white_lo.cell()} -> {white_hi.cell()})")
        big = max(s.eval_eps)
        if big > eps0:
            hi = stat(method, "pgd", big)
            if hi.values and compare(hi, pgd) > 0:
                notes.append(f"PGD accuracy is higher at eps {fmt_eps(big)} than at "
                             f"{fmt_eps(eps0)}")
        if notes:
            flagged.append(f"{_label(method)}: " + "; ".join(notes))
    checks = ("RayS below PGD; AutoAttack more than 5 points below PGD; FGSM below PGD; "
              f"gray/black-box PGD-{kmax} below white-box PGD-{s.pgd_steps}; white-box PGD "
              "accuracy rising with iterations; accuracy rising with eps")
    if flagged:
        out.append(f"**Signs of gradient masking or of a weak PGD** (checked at eps "
                   f"{fmt_eps(eps0)}: {checks}; "
                   "each only when beyond the rule above):\n\n" + "\n".join(
                       f"- {f}" for f in flagged))
    else:
        out.append(f"**Signs of gradient masking or of a weak PGD:** none found at eps "
                   f"{fmt_eps(eps0)}. Checked "
                   f"for every method: {checks}; none exceeded the rule above. This says the "
                   "white-box numbers are not contradicted by the weaker or gradient-free "
                   "attacks run here; it is not a proof of robustness.")

    # Transfer versus white box.
    rows = []
    for method in methods:
        w, g, b = (stat(method, "pgd"), stat(method, f"gray@{kmax}"),
                   stat(method, f"black@{kmax}"))
        if g.values and b.values:
            rows.append(f"{_label(method)} {w.cell()} / {g.cell()} / {b.cell()}")
    if rows:
        out.append(f"**White vs gray vs black box** at eps {fmt_eps(eps0)} (white-box "
                   f"PGD-{s.pgd_steps}x{s.pgd_restarts} / gray-box PGD-{kmax} / black-box "
                   f"PGD-{kmax}, %): " + "; ".join(rows) + ". Transferred attacks are "
                   "expected to be weaker than white-box ones; the gap is how much knowing "
                   "the weights (gray) or also the architecture (black) is worth to the "
                   "attacker."
                   + (f" Note: {kmax} steps of {s.iter_step_size:.4g} move at most "
                      f"{kmax * s.iter_step_size:.3g} per pixel, less than eps "
                      f"{fmt_eps(eps0)}, so these transfer attacks cannot reach the eps "
                      "boundary and understate what transfer can do."
                      if kmax * s.iter_step_size < eps0 else ""))

    # Sweep.
    if sweep:
        grid = sweep["grid"]
        chosen = sweep["chosen"]
        val_n = grid[0]["val_n"]
        robust = [g["val_robust"] for g in grid]
        spread = 100 * (max(robust) - min(robust))
        se = 100 * math.sqrt(chosen["val_robust"] * (1 - chosen["val_robust"]) / max(val_n, 1))
        text = (f"**Sweep:** the chosen weights are at_weight={fmt_weight(chosen['at_weight'])}, "
                f"alp_weight={fmt_weight(chosen['alp_weight'])} (validation PGD-20 "
                f"{100 * chosen['val_robust']:.1f}%, clean {100 * chosen['val_clean']:.1f}%, "
                f"n={val_n}). The grid spans {spread:.1f} points of validation robust accuracy; "
                f"one binomial standard error at n={val_n} is about {se:.1f} points and each "
                "point was trained once, so ")
        text += ("the choice is not clearly better than its neighbours."
                 if spread <= 2 * se else "the extremes of the grid do differ, but neighbouring "
                 "points may not.")
        if sweep.get("at_edge") or sweep.get("alp_edge"):
            text += (" The chosen value lies at the edge of the grid, so a value beyond it "
                     "might do better.")
        out.append(text)

    caveats = (f"**Caveats:** {len(s.seeds)} seed(s), n={n} test images, a "
               f"{s.model} model trained {s.epochs} epochs on {s.dataset}; the paper's setting "
               "(ImageNet-scale ResNets, eps 0.25/0.5 on 0-1 images) is far larger. The numbers "
               "describe this setting only.")
    if s.quick:
        caveats += (" This is the **quick** variant: too few epochs and seeds for conclusions; "
                    "run without --quick for the report's real numbers.")
    out.append(caveats)
    return out


def write_report(s, argv, info, machine, commit, dirty, sweep, train_rows, epoch_timing, agg,
                 figures, n, timings, ledger, started_at, total_seconds, load_start, load_end):
    lines = []
    title = "AT+ALP reproduction report" + (" (QUICK VARIANT)" if s.quick else "")
    lines.append(f"# {title}\n")
    if s.quick:
        lines.append("> **This is the quick variant** (`--quick`): the same pipeline with small "
                     "numbers (seeds, epochs, sweep points, test images, attack budgets below). "
                     "Its numbers are a smoke test of the pipeline, not results. Run the "
                     "command without `--quick` for the full report.\n")
    lines.append("Regenerate with:\n")
    lines.append("```\n" + "python " + " ".join(shlex.quote(a) for a in argv) + "\n```\n")
    lines.append(f"- Date: {started_at}; this invocation took {total_seconds / 60:.1f} min ("
                 + ", ".join(f"{k} {v / 60:.1f} min" for k, v in timings.items()) + ")")
    trained, reused = ledger.get("trained", 0), ledger.get("reused", 0)
    evaluated, eval_reused = ledger.get("evaluated", 0), ledger.get("eval_reused", 0)
    if reused or eval_reused:
        lines.append(f"- Resumed: {reused} of {trained + reused} models and {eval_reused} of "
                     f"{evaluated + eval_reused} evaluations were reused from `{s.out}` (made by "
                     "an earlier invocation with the same settings)")
    lines.append(f"- Compute behind the numbers (summed from the per-model files, whichever "
                 f"invocation made them): training {ledger.get('train_seconds', 0.0) / 60:.1f} "
                 f"min for {trained + reused} models, evaluation "
                 f"{ledger.get('eval_seconds', 0.0) / 60:.1f} min for "
                 f"{evaluated + eval_reused} models")
    lines.append(f"- Machine: {machine['nproc']} CPU cores ({machine['cpu']}), GPUs: "
                 f"{', '.join(machine['gpus'])}; load average {load_start:.1f} at the start and "
                 f"{load_end:.1f} at the end (other jobs share these cores, so times are upper "
                 "bounds)")
    lines.append("- Versions: " + ", ".join(f"{k} {v}" for k, v in machine["versions"].items())
                 + f"; git commit `{commit}`" + (" (with uncommitted changes)" if dirty else ""))
    lines.append(f"- Outputs: `{s.out}` (models, `eval/*.json` per model, `sweep.json`, "
                 f"`summary.json`), figures in `{s.figures_dir}`\n")

    lines.append("## Setting\n")
    aa_targets = max(1, min(9, info.num_classes - 1))
    lines.append(_md_table(["setting", "value"], [
        ["data", f"`{s.dataset}` ({info.name}): {info.num_train} training images, {n} test "
                 f"images evaluated, {info.num_classes} classes, shape {tuple(info.input_shape)}"],
        ["main models", f"`{s.model}`" + (f" (widths {','.join(map(str, s.tiny_widths))})"
                                          if s.model == "tiny" else "")
         + f", seeds {', '.join(map(str, s.seeds))}"],
        ["gray-box sources", f"same architecture and method, seed {s.source_seed}"],
        ["black-box sources", f"`{s.blackbox_model}`" + (
            f" (tiny ResNet with {','.join(map(str, s.blackbox_blocks))} blocks per stage, "
            "same widths)" if s.blackbox_model == "tiny_deep" else "")
         + f", same method, seed {s.source_seed}"],
        ["training recipe (all models)",
         f"{s.epochs} epochs, batch {s.batch_size}, {s.optimizer} lr {s.learning_rate:g} "
         f"({s.lr_schedule}), momentum {s.momentum:g}, weight decay {s.weight_decay:g}, "
         f"augmentation {s.augment}"],
        ["training attack", f"PGD eps {fmt_eps(s.eps)}, step {fmt_eps(s.step_size)}, "
                            f"{s.num_steps or 'preset'} steps" + (
                                "" if s.num_steps else " (7; TRADES 10 on its KL)")
         + "; `fast`: one FGSM step of 1.25*eps from a random start"],
        ["evaluation radii", ", ".join(fmt_eps(e) for e in s.eval_eps)],
        ["AutoAttack", f"{s.autoattack}, targets {aa_targets}"],
        ["RayS", f"{s.rays_queries} queries"],
        ["iterations", ", ".join(map(str, s.iterations)) + f" (step {fmt_eps(s.iter_step_size)})"],
    ]) + "\n")
    if s.blackbox_model == "tiny_deep":
        text = ("Black-box source choice: the paper transfers from ResNet-152 to ResNet-101, "
                "i.e. the same family at another depth; `tiny_deep` (basic blocks per stage "
                f"{','.join(map(str, s.blackbox_blocks))} instead of the main model's 1,1,1,1) "
                "is that relation at this scale, trained with the shared recipe.")
        if s.dataset == "digits":
            text += (" The plain `cnn` backbone (no residuals, no BatchNorm) was tried first on "
                     "digits with this recipe (SGD 0.05, cosine, 20 epochs): it reached only 65% "
                     "clean accuracy undefended and 17% with PGD-AT, so its adversarial examples "
                     "would mostly measure a weak source. It stays available as "
                     "`--blackbox_model=cnn`.")
        lines.append(text + "\n")

    if sweep:
        lines.append("## Sweep of the AT and ALP weights (`at_alp`, validation split of the "
                     "training set)\n")
        lines.append(f"{sweep['train_examples']} training images, {sweep['val_examples']} held "
                     f"out of the training set for validation ({sweep['val_scored']} scored); "
                     f"seed {sweep['seed']}; criterion: {sweep['criterion']}. Stage 1 varies "
                     f"the AT weight at the preset ALP weight {sweep['preset']['alp_weight']:g};"
                     " stage 2 varies the ALP weight at the stage-1 choice. The test set plays "
                     "no part in the choice (the library logs clean test accuracy after each "
                     "epoch; nothing here reads it).\n")
        rows = []
        for entry in sweep["grid"]:
            chosen = (entry["at_weight"] == sweep["chosen"]["at_weight"]
                      and entry["alp_weight"] == sweep["chosen"]["alp_weight"])
            rows.append([",".join(map(str, entry["stages"])), fmt_weight(entry["at_weight"]),
                         fmt_weight(entry["alp_weight"]), f"{100 * entry['val_clean']:.1f}",
                         f"{100 * entry['val_robust']:.1f}", entry["val_n"],
                         "**chosen**" if chosen else ""])
        lines.append(_md_table(["stage", "at_weight", "alp_weight", "val clean %",
                                f"val PGD-20 % (eps {fmt_eps(s.eps)})", "n", ""], rows) + "\n")
        lines.append(f"**Choice: at_weight = {fmt_weight(sweep['chosen']['at_weight'])}, "
                     f"alp_weight = {fmt_weight(sweep['chosen']['alp_weight'])}.** The main "
                     "`at_alp` models use both; the main `at` models use this AT weight (their "
                     "ALP weight stays 0, the preset's); `alp` keeps its preset ALP weight "
                     "0.5.\n")

    lines.append("## Training\n")
    lines.append(_md_table(
        ["method", "loss weights (nat/adv/alp/at/beta)", "s/epoch (main models)",
         "first epoch s (incl. tracing)", "s/epoch gray src", "s/epoch black src",
         "final clean test % (main)"], train_rows) + "\n")
    lines.append("Seconds per epoch are the mean over epochs 2..N of each model (epoch 1 also "
                 "traces the graphs), mean ± std over the main seeds.\n")

    settings = attack_settings(s, info.num_classes)
    kmax = s.iterations[-1]
    lines.append("## Robust accuracy (test set, %, mean ± std over seeds)\n")
    lines.append("Attack settings:\n")
    for key in ("fgsm", "pgd", "autoattack", "rays", "worst-case", "transfer"):
        lines.append(f"- {settings[key]}")
    lines.append("")
    for eps in s.eval_eps:
        header = ["method", f"clean (n={n})", f"FGSM (eps {fmt_eps(eps)}, 1 step)",
                  f"PGD-{s.pgd_steps}x{s.pgd_restarts} (eps {fmt_eps(eps)})",
                  f"AutoAttack-{s.autoattack} (eps {fmt_eps(eps)})",
                  f"RayS {s.rays_queries} q (eps {fmt_eps(eps)})",
                  f"worst case (eps {fmt_eps(eps)})",
                  f"gray-box PGD-{kmax} (eps {fmt_eps(eps)})",
                  f"black-box PGD-{kmax} (eps {fmt_eps(eps)})"]
        rows = []
        for method in s.methods:
            a = agg[method]
            cells = [a.get((key, eps), Stat([], n)).cell() for key in
                     ("clean", "fgsm", "pgd", "autoattack", "rays", "worst-case",
                      f"gray@{kmax}", f"black@{kmax}")]
            rows.append([_label(method)] + cells)
        lines.append(f"### eps = {fmt_eps(eps)} (n = {n} test images, {len(s.seeds)} seed(s) "
                     "per method)\n")
        lines.append(_md_table(header, rows) + "\n")

    lines.append("### RayS average decision-boundary distance\n")
    lines.append("Mean L-inf distance of the nearest decision boundary RayS found, over the "
                 "correctly classified images (per image an upper bound on the true distance; "
                 "with early stop a search ends as soon as it is within eps, so it does not "
                 "estimate distances below eps). Larger = more robust.\n")
    rows = [[_label(m)] + [_distance_cell(agg[m].get(("rays_distance", e)))
                           for e in s.eval_eps] for m in s.methods]
    lines.append(_md_table(["method"] + [f"eps {fmt_eps(e)}, {s.rays_queries} q"
                                         for e in s.eval_eps], rows) + "\n")

    lines.append("### Accuracy against PGD iterations (%, mean ± std over seeds)\n")
    lines.append(settings["transfer"] + "; white-box uses the same step on the model itself.\n")
    for eps in s.eval_eps:
        header = ["method", "threat"] + [f"k={k}" for k in s.iterations]
        rows = []
        for method in s.methods:
            for threat in ("white", "gray", "black"):
                rows.append([_label(method), threat] + [
                    agg[method].get((f"{threat}@{k}", eps), Stat([], n)).cell()
                    for k in s.iterations])
        lines.append(f"eps = {fmt_eps(eps)}, n = {n}:\n")
        lines.append(_md_table(header, rows) + "\n")

    lines.append("## Figures\n")
    report_dir = os.path.dirname(os.path.abspath(s.report))
    captions = {
        "attention": "Attention maps (p=2) of each stage for clean and white-box PGD images, "
                     "one block of rows per method (seed "
                     f"{s.seeds[0]} models)",
        "iterations_white": "White-box accuracy against PGD iterations",
        "iterations_gray": "Gray-box accuracy against PGD iterations (source: same method and "
                           f"architecture, seed {s.source_seed})",
        "iterations_black": "Black-box accuracy against PGD iterations (source: "
                            f"`{s.blackbox_model}`, same method)",
        "landscape": f"Loss landscapes (mean over {min(s.landscape_images, n)} test images; "
                     f"grid ±{fmt_eps(max(s.eval_eps))}, {s.landscape_points} points per axis)",
        "accuracy_vs_eps": "Accuracy against eps (white-box PGD-20, 1 restart)",
    }
    for key, path in figures.items():
        rel = os.path.relpath(os.path.abspath(path), report_dir)
        lines.append(f"**{captions.get(key, key)}** (`{rel}`)\n")
        lines.append(f"![{key}]({rel})\n")

    lines.append("## Discussion (generated from the numbers above)\n")
    lines += [p + "\n" for p in discussion(s, agg, sweep, epoch_timing, n)]
    folder = os.path.dirname(s.report)
    if folder:
        os.makedirs(folder, exist_ok=True)
    with open(s.report, "w") as handle:
        handle.write("\n".join(lines))
    return s.report


def _distance_cell(stat):
    if stat is None or not stat.values:
        return "-"
    if stat.std is None:
        return f"{stat.mean:.3f}"
    return f"{stat.mean:.3f} ± {stat.std:.3f}"


# -------------------------------------------------------------------- main


def run(s, argv):
    import keras
    import tensorflow as tf

    from atalp_keras import data, evaluation

    # Every attack is built per model and eps, so TensorFlow's retracing
    # warnings are expected here and only hide the progress lines.
    tf.get_logger().setLevel("ERROR")

    started = time.time()
    started_at = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    load_start = os.getloadavg()[0]
    os.makedirs(s.out, exist_ok=True)
    commit, dirty = git_state()
    with open(os.path.join(s.out, "flags.txt"), "w") as handle:
        handle.write(f"# {PROGRAM}, git commit {commit}\n")
        handle.write("# replay: python " + " ".join(shlex.quote(a) for a in argv) + "\n")
        for name in _FLAG_NAMES:
            value = FLAGS[name].serialize()
            if value:
                handle.write(value + "\n")
    timings = {}
    ledger = {}

    info = data.load_dataset(s.dataset, data_dir=s.data_dir, image_size=s.image_size,
                             seed=s.data_seed)
    x_test, y_test, _ = evaluation.load_test_arrays(
        s.dataset, data_dir=s.data_dir, image_size=s.image_size, data_seed=s.data_seed,
        num_examples=s.num_test, seed=s.data_seed)
    x_test, y_test = x_test.astype(np.float32), y_test.astype(np.int32)
    n = len(y_test)
    log(f"{info.name}: {info.num_train} training, {info.num_test} test images; evaluating "
        f"{n}; quick={s.quick}")

    # 1. Sweep.
    t = time.time()
    sweep = None
    at_weight = alp_weight = None
    if s.sweep and ("at_alp" in s.methods or "at" in s.methods):
        sweep = run_sweep(s, info, ledger)
        at_weight = sweep["chosen"]["at_weight"]
        alp_weight = sweep["chosen"]["alp_weight"]
        log(f"sweep chose at_weight={at_weight:g}, alp_weight={alp_weight:g}")
    timings["sweep"] = time.time() - t

    # 2. Training: main models, gray- and black-box sources.
    t = time.time()
    main_models, sources, train_rows, epoch_timing = [], {}, [], {}
    for method in s.methods:
        weights = {}
        if method == "at_alp":
            weights = {"at_weight": at_weight, "alp_weight": alp_weight}
        elif method == "at":
            weights = {"at_weight": at_weight}
        folder = os.path.join(s.out, "models", method)
        main_metrics = []
        for seed in s.seeds:
            model_dir = os.path.join(folder, f"seed{seed}")
            metrics, _ = train_model(_train_config(s, method, seed, model_dir, **weights),
                                     f"{method} seed {seed}", ledger)
            main_metrics.append(metrics)
            main_models.append({"name": f"{method}_seed{seed}", "method": method,
                                "seed": seed, "dir": model_dir})
        gray_dir = os.path.join(folder, f"gray_seed{s.source_seed}")
        gray_metrics, _ = train_model(_train_config(s, method, s.source_seed, gray_dir,
                                                    **weights), f"{method} gray source",
                                      ledger)
        black_spec = blackbox_model_spec(s, info, s.source_seed,
                                         os.path.join(s.out, "models", "init"))
        black_dir = os.path.join(folder, f"black_{s.blackbox_model}_seed{s.source_seed}")
        black_metrics, _ = train_model(_train_config(s, method, s.source_seed, black_dir,
                                                     model=black_spec, **weights),
                                       f"{method} black source", ledger)
        sources[method] = {"gray": (f"{method}_gray_seed{s.source_seed}", gray_dir),
                           "black": (f"{method}_black_{s.blackbox_model}", black_dir)}
        steady = [epoch_seconds(m)[1] for m in main_metrics]
        first = [epoch_seconds(m)[0] for m in main_metrics]
        clean = Stat([m["test"]["accuracy"] for m in main_metrics], main_metrics[0]["test"]["n"])
        w = main_metrics[0]["training"]["loss_weights"]
        epoch_timing[method] = float(np.mean(steady))
        train_rows.append([
            _label(method),
            "/".join(fmt_weight(w.get(k, 0.0)) for k in ("natural_weight", "adv_weight",
                                                         "alp_weight", "at_weight",
                                                         "trades_beta")),
            _seconds_cell(steady), _seconds_cell(first),
            f"{epoch_seconds(gray_metrics)[1]:.2f}", f"{epoch_seconds(black_metrics)[1]:.2f}",
            clean.cell()])
    timings["training"] = time.time() - t

    # 3. Evaluation.
    t = time.time()
    results = []
    for method in s.methods:
        srcs = {}
        for threat in ("gray", "black"):
            label, model_dir = sources[method][threat]
            srcs[threat] = (label, evaluation.load_model_for_eval(model_dir)[0])
        for entry in [m for m in main_models if m["method"] == method]:
            results.append(evaluate_main(s, entry, x_test, y_test, srcs, info, ledger))
        del srcs
        keras.backend.clear_session()
    timings["evaluation"] = time.time() - t
    agg = aggregate(results, s, n)
    write_json(os.path.join(s.out, "summary.json"), {
        "settings": dataclasses.asdict(s), "sweep": sweep, "n": n,
        "aggregate": {m: {f"{k[0]}@{k[1]!r}": {"mean": v.mean, "std": v.std, "values": v.values}
                          for k, v in a.items()} for m, a in agg.items()},
        "epoch_seconds": epoch_timing})

    # 4. Figures and report.
    t = time.time()
    figures = make_figures(s, info, x_test, y_test, main_models, agg)
    timings["figures"] = time.time() - t
    machine = machine_info()
    total = time.time() - started
    path = write_report(s, argv, info, machine, commit, dirty, sweep, train_rows, epoch_timing,
                        agg, figures, n, timings, ledger, started_at, total, load_start,
                        os.getloadavg()[0])
    log(f"report: {path} ({total / 60:.1f} min)")
    return path


def _seconds_cell(values):
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{np.mean(values):.2f} ± {np.std(values, ddof=1):.2f}"


def main(argv):
    from atalp_keras import cli

    del argv
    try:
        settings = settings_from_flags()
    except ValueError as error:
        cli.fail(PROGRAM, error)
    run(settings, [PROGRAM] + sys.argv[1:])


if __name__ == "__main__":
    define_flags()
    app.run(main)
