"""The settings of each analysis command, each declared once.

A setting used by several commands (``models``, ``eps``, ``num_images``, ...)
lives in one small group below; each command's dataclass combines the groups
it reads. Field metadata (``help``, ``lower_bound``, ``choices``, ``parser``)
is what the command line's ``define_flags`` turns into the absl flags of
``analyze.py``, so a new setting is one field with its help text. The
``__post_init__`` checks raise `UsageError` naming the flag.

Data settings (``dataset``, ``data_seed``, ``image_size``) default to what the
analysed model's card says: the analysis runs on the test split the model was
trained against. ``seed`` is only the attack's seed.
"""

import dataclasses
from typing import Optional

from atalp_keras.parsing import parse_eps, parse_image_size
from atalp_keras.errors import UsageError


def setting(default, help, **metadata):
    """A dataclass field that is also a flag of ``analyze.py``."""
    return dataclasses.field(default=default, metadata=dict(help=help, **metadata))


def parse_eps_list(text, name="eps"):
    """``"0.25,64/256"`` -> ``(0.25, 0.25)``; empty -> ``()``."""
    return tuple(parse_eps(item, name) for item in str(text).split(",") if item.strip())


def require(value, flag):
    """``value`` unless it is empty; else a `UsageError` naming ``--flag``."""
    if not value:
        raise UsageError(f"--{flag} is required for this subcommand. Received: {flag}={value!r}")
    return value


def one_value(values, flag, command, default):
    """The single value of a list flag (``default`` when empty)."""
    if not values:
        return default
    if len(values) != 1:
        shown = ",".join(f"{v:g}" for v in values)
        raise UsageError(f"{command} takes one --{flag} value. Received: {flag}={shown}")
    return values[0]


@dataclasses.dataclass(frozen=True)
class RunSettings:
    """Where the results go, and what every command reads the same way."""

    out: Optional[str] = setting(
        None, "Folder the figures, tables and flags are written to (required).")
    batch_size: int = setting(256, "Images per forward/attack pass.", lower_bound=1)
    seed: int = setting(
        0, "Seed of the attack: PGD random starts and the landscape's random "
        "direction. The train/test split is not changed by it (--data_seed).")
    dataset: Optional[str] = setting(
        None, "Data source: digits, tfds:<name>[:split], folder:<path>, idx:<path>; "
        "its test split is used. Default: the dataset in the model's card "
        "(model_card.json of its run folder, or its export metadata), else digits. "
        "A value other than the card's is refused.")
    data_dir: Optional[str] = setting(
        None, "TFDS data folder (tfds: datasets only). Default: the model card's.")
    data_seed: Optional[int] = setting(
        None, "Seed of the train/test split of digits and folder: datasets. "
        "Default: the model card's (else 0); a value other than the card's is "
        "refused, since it would put training images into the analysis.")
    image_size: Optional[tuple] = setting(
        None, "Resize dataset images to H,W (or one number for square images). "
        "Default: the model card's, else keep their size.", parser=parse_image_size)

    def __post_init__(self):
        require(self.out, "out")


@dataclasses.dataclass(frozen=True)
class _Models:
    models: tuple = setting(
        (), "attention, landscape, key_regions: comma-separated classifiers to "
        "analyse, each a training run folder (its classifier.keras), a .keras "
        "file or, for landscape only, a SavedModel folder (attention and "
        "key_regions read stage outputs, which a SavedModel does not expose).")


@dataclasses.dataclass(frozen=True)
class _NumImages:
    num_images: int = setting(
        4, "attention: test images shown (rows per model). landscape: test "
        "images the loss is averaged over.", lower_bound=1)


@dataclasses.dataclass(frozen=True)
class _PGD:
    eps: tuple = setting(
        (), "L-inf radius on the [0, 1] pixel scale; decimals or fractions "
        "(8/255, 64/256). attention: one value (default 0.25, the paper's "
        "Figure 4). iterations: a list (default 0.25,0.5, Figure 3). "
        "key_regions: optional, one value; also measures PGD adversarial "
        "images (default: clean images only).", parser=parse_eps_list)
    step_size: Optional[float] = setting(
        None, "PGD step on the [0, 1] scale (decimal or fraction). attention, "
        "key_regions: default 2.5 * eps / num_steps. iterations: default "
        "1/256 (the paper).", parser=parse_eps)
    random_start: bool = setting(
        True, "attention, iterations, key_regions: start PGD at a uniform point "
        "of the eps-ball.")


@dataclasses.dataclass(frozen=True)
class _StageAttack(_PGD):
    num_steps: int = setting(
        20, "attention, key_regions: PGD iterations of the attack.", lower_bound=1)
    source_model: Optional[str] = setting(
        None, "attention, key_regions: make the adversarial images on this model "
        "for every --models entry (transfer, as in the paper's Figure 4). "
        "Default: each model is attacked itself (white box).")
    stage_layers: tuple = setting(
        (), "attention, key_regions: comma-separated names of the layers whose "
        "outputs are the stages. Default: the ResNet stage ends "
        "conv{2..5}_block{N}_out.")


@dataclasses.dataclass(frozen=True)
class AttentionSettings(RunSettings, _Models, _NumImages, _StageAttack):
    """``analyze.py attention``: Figures 1 and 4."""

    def __post_init__(self):
        super().__post_init__()
        require(self.models, "models")
        one_value(self.eps, "eps", "attention", None)

    @property
    def attack_eps(self):
        return one_value(self.eps, "eps", "attention", 0.25)


@dataclasses.dataclass(frozen=True)
class IterationsSettings(RunSettings, _PGD):
    """``analyze.py iterations``: Figure 3."""

    model: Optional[str] = setting(
        None, "iterations: the evaluated (target) classifier: a run folder, "
        ".keras file or SavedModel.")
    source_models: tuple = setting(
        (), "iterations: comma-separated models the PGD attack runs on; their "
        "adversarial images are transferred to --model. Gray box: same "
        "architecture and method, another seed; black box: another "
        "architecture. Empty means white box (attack --model itself).")
    source_labels: tuple = setting(
        (), "iterations: names for --source_models in the plot and tables, one "
        "per source (e.g. gray,black). Default: the models' names.")
    white_box: bool = setting(
        False, "iterations: also attack --model itself (white box) when "
        "--source_models is given.")
    iterations: tuple = setting(
        (10, 20, 50, 100, 200), "iterations: strictly increasing PGD step counts "
        "to evaluate; one PGD run per source is snapshotted at each.", item=int)
    restarts: int = setting(
        1, "iterations: PGD runs per example with different random starts; per "
        "example the worst on the attacking model is kept.", lower_bound=1)
    num_examples: int = setting(
        500, "iterations: test examples evaluated (the first ones of the split).",
        lower_bound=1)

    def __post_init__(self):
        from atalp_keras.analysis.iterations import check_iterations

        super().__post_init__()
        require(self.model, "model")
        if self.source_labels and len(self.source_labels) != len(self.source_models):
            raise UsageError(
                f"--source_labels needs one name per source model. Received: "
                f"{len(self.source_labels)} labels for {len(self.source_models)} "
                "source models")
        check_iterations(self.iterations)

    @property
    def eps_values(self):
        return tuple(self.eps) or (0.25, 0.5)

    @property
    def pgd_step_size(self):
        return self.step_size or 1 / 256


@dataclasses.dataclass(frozen=True)
class LandscapeSettings(RunSettings, _Models, _NumImages):
    """``analyze.py landscape``: Figure 6."""

    eps_max: float = setting(
        0.25, "landscape: half-width of the grid, a in [-eps_max, eps_max] along "
        "sign(grad) and b likewise along the Rademacher direction (decimal or "
        "fraction, [0, 1] scale).", parser=parse_eps)
    grid_points: int = setting(
        21, "landscape: grid points per axis (odd counts include the clean input).",
        lower_bound=2)
    landscape_kind: str = setting(
        "surface", "landscape: 3-D surface or filled contour plot.",
        choices=("surface", "contour"))

    def __post_init__(self):
        super().__post_init__()
        require(self.models, "models")


@dataclasses.dataclass(frozen=True)
class KeyRegionsSettings(RunSettings, _Models, _StageAttack):
    """``analyze.py key_regions``: Table 3."""

    images: Optional[str] = setting(
        None, "key_regions: folder of PNG images in [0, 255] (resized to each "
        "model's input size when they differ).")
    masks: Optional[str] = setting(
        None, "key_regions: folder of PNG masks named like the images; each "
        "binary (0 = background, 1 or 255 = key region), same size as its image.")

    def __post_init__(self):
        super().__post_init__()
        require(self.models, "models")
        require(self.images, "images")
        require(self.masks, "masks")
        one_value(self.eps, "eps", "key_regions", None)

    @property
    def attack_eps(self):
        """The PGD eps, or None: clean images only."""
        return one_value(self.eps, "eps", "key_regions", None)


SETTINGS = {
    "attention": AttentionSettings,
    "iterations": IterationsSettings,
    "landscape": LandscapeSettings,
    "key_regions": KeyRegionsSettings,
}
