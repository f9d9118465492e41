"""The settings of one reproduction run, each declared once.

`Settings` holds what the reproduction itself decides (methods, seeds,
sources, sweep, attacks, figures, outputs); the command line
(``experiments/reproduce.py``) generates its flags from the field metadata.
The training recipe shared by every model is not restated here: it is a dict of `TrainConfig` field
names (``Settings.recipe``), filled from the preset and from one generated
flag per name in `RECIPE_FIELDS`, and passed through to `TrainConfig` by name.
"""

import dataclasses
import typing

from atalp_keras.errors import UsageError
from atalp_keras.parsing import parse_eps, parse_fraction, parse_image_size

# TrainConfig fields a reproduction recipe may set (shared by every model).
RECIPE_FIELDS = ("dataset", "data_dir", "image_size", "data_seed", "model", "tiny_widths",
                 "augment", "eps", "step_size", "num_steps", "epochs", "batch_size",
                 "optimizer", "learning_rate", "momentum", "lr_schedule", "weight_decay",
                 "verbose")
EPS_FIELDS = ("eps", "step_size")


def _f(default, help_text, **meta):
    meta["help"] = help_text
    return dataclasses.field(default=default, metadata=meta)


def _radius(text):
    return parse_eps(text, "eps")


@dataclasses.dataclass
class Settings:
    """Every setting of a run (after the preset and --quick are applied)."""

    preset: str = _f("digits", "Named recipe (presets.py); a flag given explicitly wins.",
                     choices=("digits", "fmnist"))
    quick: bool = _f(False, "Quick variant: the same pipeline with small numbers. Flags "
                            "given explicitly override them.")
    methods: tuple = _f((), "Presets to train and compare.")
    seeds: tuple = _f((), "Seeds of the main models of every method.", item=int)
    more_seeds: tuple = _f((), "Extra seeds for the methods in --more_seeds_methods.", item=int)
    more_seeds_methods: tuple = _f((), "Methods that also get --more_seeds.")
    source_seed: int = _f(100, "Seed of the gray-box and black-box sources (not a main seed).",
                          lower_bound=0)
    source_methods: tuple = _f((), "Methods that get gray/black-box sources (empty: all).")
    transfer: bool = _f(True, "Train the gray/black-box sources and attack from them; "
                              "--notransfer evaluates white-box only (a later run with "
                              "transfer reuses every white-box result).")
    blackbox_model: str = _f("", "Architecture of the black-box sources (a registered "
                                 "backbone, not the main one).")
    blackbox_method: str = _f("", "Method of ONE black-box source shared by every method "
                                  "(empty: each method gets its own, trained like it).")
    gray_from_seeds: bool = _f(False, "A method with two or more main seeds takes another "
                                      "seed's main model as its gray-box source (each seed is "
                                      "attacked from the next one, the last from the first) "
                                      "instead of training a --source_seed model.")
    also_eps: tuple = _f((), "Further training radii, each a second run into --out with "
                             "{eps} replaced (one seed, no sources).", item=_radius)
    also_eps_methods: tuple = _f((), "Methods trained at each --also_eps radius.")
    longer_epochs: int = _f(0, "Also train the first seed of each --longer_methods for this "
                               "many epochs (more than the recipe's; 0 = none) and evaluate "
                               "it at the training eps like a main model: what longer "
                               "training adds to clean and robust accuracy.", lower_bound=0)
    longer_methods: tuple = _f((), "Methods of the --longer_epochs models.")
    train_only: bool = _f(False, "Train every model (sweep, main models, sources, every "
                                 "radius) and stop before the evaluation; a later run without "
                                 "this flag reuses them.")
    sweep: bool = _f(True, "Sweep the AT and ALP weights of at_alp (else the presets').")
    at_weights: tuple = _f((), "AT weights tried (ALP at the preset's 0.5).", item=float)
    alp_weights: tuple = _f((), "ALP weights tried at the chosen AT weight.", item=float)
    val_fraction: float = _f(0.2, "Fraction of the TRAINING set held out for the sweep.",
                             lower_bound=0.0, upper_bound=1.0)
    max_val_examples: int = _f(1000, "Validation images scored (0 = all).", lower_bound=0)
    sweep_epochs: int = _f(0, "Epochs of a sweep model (0 = the recipe's).", lower_bound=0)
    sweep_train_examples: int = _f(0, "Training images of a sweep model (0 = all but the "
                                      "validation split).", lower_bound=0)
    eval_eps: tuple = _f((), "Evaluation radii of the main run (the training eps first).",
                         item=_radius)
    num_test: int = _f(0, "Test images attacked (a fixed random subset; 0 = all).",
                       lower_bound=0)
    pgd_steps: int = _f(20, "White-box PGD steps.", lower_bound=1)
    pgd_restarts: int = _f(5, "White-box PGD restarts (worst per image).", lower_bound=1)
    autoattack: str = _f("standard", "AutoAttack version.", choices=("standard", "fast"))
    square_queries: int = _f(0, "Queries of a stand-alone Square attack (0 = none).",
                             lower_bound=0)
    rays_queries: int = _f(1000, "RayS label queries per image.", lower_bound=1)
    audit: bool = _f(False, "Run the gradient-masking audit on every main model.")
    iterations: tuple = _f((), "PGD iterations of the white/gray/black-box curves.", item=int)
    iter_step_size: float = _f(1 / 256, "PGD step of those curves.", parser=parse_eps)
    curve_eps: tuple = _f((), "Extra radii of the accuracy-vs-eps curve (PGD, 1 restart).",
                          item=_radius)
    attack_seed: int = _f(0, "Seed of the attacks' random starts.", lower_bound=0)
    eval_batch_size: int = _f(512, "Images per attack call.", lower_bound=1)
    figure_methods: tuple = _f((), "Methods in the attention and landscape figures "
                                   "(empty: all).")
    attention_images: int = _f(3, "Test images in the attention figure.", lower_bound=1)
    landscape_images: int = _f(16, "Test images the loss landscape averages.", lower_bound=1)
    landscape_points: int = _f(21, "Grid points per axis of the landscape.", lower_bound=3)
    out: str = _f("", "Folder of models, evaluations and JSON ({eps}: the training eps).")
    report: str = _f("", "Markdown report to write.")
    figures_dir: str = _f("", "Folder of the PNGs; empty = the report's path without '.md'.")
    recipe: dict = dataclasses.field(default_factory=dict)  # TrainConfig fields by name

    def seeds_of(self, method):
        """The main seeds of ``method``."""
        extra = self.more_seeds if method in self.more_seeds_methods else ()
        return tuple(dict.fromkeys(tuple(self.seeds) + tuple(extra)))

    def has_sources(self, method):
        return not self.source_methods or method in self.source_methods

    def gray_from_main(self, method):
        """Whether ``method``'s gray-box source is another of its main models
        (``--gray_from_seeds`` with two or more seeds) rather than a trained
        ``--source_seed`` model."""
        return self.gray_from_seeds and len(self.seeds_of(method)) > 1

    def in_figures(self, method):
        return not self.figure_methods or method in self.figure_methods

    @property
    def eps(self):
        return float(self.recipe["eps"])

    def out_for(self, eps):
        return self.out.replace("{eps}", f"{eps:g}")


# --------------------------------------------------------- recipe values


def recipe_field(name):
    """The `TrainConfig` field ``name`` (a recipe key)."""
    from atalp_keras.training import TrainConfig

    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    if name not in fields or name not in RECIPE_FIELDS:
        raise UsageError(f"A recipe sets TrainConfig fields of {', '.join(RECIPE_FIELDS)}. "
                         f"Received: {name!r}")
    return fields[name]


def parse_recipe_value(name, text):
    """``text`` as the type of `TrainConfig` field ``name``."""
    field = recipe_field(name)
    if not isinstance(text, str):
        return text
    if name in EPS_FIELDS:
        return parse_fraction(text, name)
    if name == "image_size":
        return parse_image_size(text, name)
    kind = field.type
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    if typing.get_origin(kind) is typing.Union and args:
        kind = args[0]
    try:
        if kind is tuple:
            return tuple(int(v) for v in text.split(",") if v.strip())
        if kind is bool:
            return text.lower() in ("1", "true", "yes")
        return kind(text) if kind in (int, float) else text
    except ValueError:
        raise UsageError(f"--{name} must be of type {kind.__name__}. "
                         f"Received: {name}={text!r}") from None


def check(s):
    """Checks the combination of settings; raises `UsageError`."""
    from atalp_keras.backbones import names
    from atalp_keras.methods import METHODS

    for name in ("methods", "more_seeds_methods", "source_methods", "also_eps_methods",
                 "figure_methods", "longer_methods"):
        bad = [m for m in getattr(s, name) if m not in METHODS]
        if bad or (name == "methods" and not s.methods):
            raise UsageError(f"--{name} must list presets of {', '.join(METHODS)}. "
                             f"Received: {name}={','.join(getattr(s, name))}")
    seeds = list(s.seeds) + list(s.more_seeds)
    if not s.seeds or len(set(s.seeds)) != len(s.seeds):
        raise UsageError(f"--seeds must list distinct integers. Received: {list(s.seeds)}")
    if s.source_seed in seeds:
        raise UsageError(f"--source_seed must differ from the main seeds (a gray-box source "
                         f"is another model). Received: source_seed={s.source_seed}, "
                         f"seeds={seeds}")
    if not s.iterations or sorted(set(s.iterations)) != list(s.iterations) \
            or s.iterations[0] < 1:
        raise UsageError(f"--iterations must be increasing positive integers. "
                         f"Received: {list(s.iterations)}")
    if not s.eval_eps or not s.at_weights or not s.alp_weights:
        raise UsageError("--eval_eps, --at_weights and --alp_weights must be non-empty.")
    if any(w < 0 for w in s.at_weights + s.alp_weights):
        raise UsageError(f"--at_weights and --alp_weights must be >= 0. Received: "
                         f"{list(s.at_weights)}, {list(s.alp_weights)}")
    if not 0.0 < s.val_fraction < 1.0:
        raise UsageError(f"--val_fraction must be in (0, 1). Received: {s.val_fraction}")
    model = s.recipe.get("model")
    if s.blackbox_model == model or s.blackbox_model not in names():
        raise UsageError(f"--blackbox_model must be a registered backbone other than the main "
                         f"model {model!r}. Received: blackbox_model={s.blackbox_model!r}")
    if s.blackbox_method and s.blackbox_method not in METHODS:
        raise UsageError(f"--blackbox_method must be empty or one of {', '.join(METHODS)}. "
                         f"Received: blackbox_method={s.blackbox_method!r}")
    epochs = s.recipe.get("epochs")
    if s.longer_epochs and (not s.longer_methods or (epochs and s.longer_epochs <= epochs)):
        raise UsageError(f"--longer_epochs must exceed the recipe's epochs ({epochs}) and "
                         f"needs --longer_methods. Received: longer_epochs={s.longer_epochs}, "
                         f"longer_methods={','.join(s.longer_methods)}")
    if s.also_eps and "{eps}" not in s.out:
        raise UsageError(f"--also_eps needs an --out holding {{eps}} (one folder per radius). "
                         f"Received: out={s.out!r}")
    return s
