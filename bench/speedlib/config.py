"""The benchmark's settings, each declared once (flags are generated from `BenchSettings`)."""

import dataclasses
from typing import Optional

PRESETS = ("standard", "pat", "alp", "at", "at_alp", "trades", "fast")
PAIRED = ("alp", "at", "at_alp", "trades")
SECTIONS = ("costmodel", "units", "steps", "epochs", "train", "attacks", "evalcost")


def _flag(default, help, **extra):
    """A dataclass field that `define_flags` turns into a flag."""
    return dataclasses.field(default=default, metadata={"help": help, **extra})


@dataclasses.dataclass
class BenchSettings:
    """Command-line settings of ``bench/speed.py``; None means "pick from --model/--quick"."""

    quick: bool = _flag(False, "Smoke-sized run: presets standard/pat/at_alp, the reference loop, "
                        "3 ART batches, FGSM and PGD-20 on 128 points, no levers.")
    model: str = _flag("small_cnn", "Workload (see speedlib/workloads.py): small_cnn / tiny_resnet "
                       "on 8x8 digits; tiny_resnet28 and fmnist on 28x28x1 images; resnet18 on "
                       "32x32x3 random images.",
                       choices=("small_cnn", "tiny_resnet", "tiny_resnet28", "fmnist", "resnet18"))
    data: str = _flag("auto", "Images: auto (digits for the 8x8 models, random elsewhere), "
                      "random, or fashion_mnist (the Debian IDX files; 28x28 models only).",
                      choices=("auto", "random", "fashion_mnist"))
    batch_size: Optional[int] = _flag(None, "Images per training batch (default 64 on digits, "
                                      "128 at 28x28, 32 for resnet18).", lower_bound=1)
    random_images: int = _flag(6400, "Training images when --data=random (28x28 and resnet18).",
                               lower_bound=1)
    pgd_steps: int = _flag(7, "K, PGD steps of the training attack.", lower_bound=1)
    eps: Optional[float] = _flag(None, "L-inf radius on the [0, 1] scale; default 0.1, 8/255 for "
                                 "resnet18.")
    step_size: Optional[float] = _flag(None, "Training attack step; default eps / 4.")
    timed_epochs: Optional[int] = _flag(None, "Epochs timed after the warm-up (median reported) in "
                                        "the train rows; default 10, quick 3.")
    steps_per_epoch: Optional[int] = _flag(None, "Batches per epoch; default a full pass over the "
                                           "data (2 for resnet18).")
    presets: Optional[str] = _flag(None, "Comma list of presets; default all "
                                   f"({','.join(PRESETS)}).")
    jit_compile: str = _flag("none", "Comma list of XLA variants of the train rows: none, step "
                             "(compile(jit_compile=True)), attack (the attack loop only).")
    epoch_rounds: Optional[int] = _flag(None, "Rounds of the interleaved epochs section (default "
                                        "12, quick 4; 1 for resnet18).")
    spe: int = _flag(8, "steps_per_execution of the lever row.", lower_bound=1)
    sections: str = _flag("units,steps,epochs,train,attacks", "Comma list of "
                          f"{', '.join(SECTIONS)}.")
    attacks: Optional[str] = _flag(None, "Comma list of fgsm, pgd20, pgd20-nors (no random start), "
                                   "apgd-ce, autoattack-fast, autoattack-standard.")
    attack_points: Optional[int] = _flag(None, "Test points attacked (default 360, quick 128).")
    attack_batch: int = _flag(256, "Batch size of every attack, ours and ART's.", lower_bound=1)
    art_batches: Optional[int] = _flag(None, "ART trainer batches timed after one warm-up batch "
                                       "(default 8, quick 3).")
    art_autoattack_points: int = _flag(64, "Points for both AutoAttack rows of the attacks "
                                       "section (ART's Square and DeepFool are slow).")
    eval_attacks: str = _flag("autoattack,pgd,rays", "Comma list of the evalcost section's "
                              "attacks: autoattack (standard), pgd (PGD-20), rays.")
    eval_points: int = _flag(1000, "Test images of the evalcost section.", lower_bound=1)
    eval_model: Optional[str] = _flag(None, "A .keras classifier for the evalcost section "
                                      "(default: the model trained by the prepare row).")
    rays_queries: int = _flag(1000, "Query budget of RayS in the evalcost section.", lower_bound=1)
    repeats: int = _flag(1, "Run the repeated rows this many times in turn (A B C A B C) and "
                         "report medians.", lower_bound=1)
    prepare_epochs: Optional[int] = _flag(None, "Epochs of package pat training (Adam 3e-3) of "
                                          "the attacked model (default 30, quick 20; 0 for "
                                          "random data).")
    levers: Optional[bool] = _flag(None, "Lever rows (default on, off with --quick).")
    art: bool = _flag(True, "ART rows (needs pip install -e .[bench]).")
    row_timeout: float = _flag(1800.0, "Seconds after which one row is abandoned.")
    seed: int = _flag(0, "Seed of data, models and attacks.")
    out: Optional[str] = _flag(None, "JSON output (default bench/results/speed_<model>.json, "
                               "_quick with --quick).")


INPUT_SHAPES = {"small_cnn": (8, 8, 1), "tiny_resnet": (8, 8, 1), "tiny_resnet28": (28, 28, 1),
                "fmnist": (28, 28, 1), "resnet18": (32, 32, 3)}
DEFAULT_BATCH = {(8, 8, 1): 64, (28, 28, 1): 128, (32, 32, 3): 32}


def resolve(settings):
    """The row configuration (a JSON-able dict) from `BenchSettings`, defaults filled in.

    Raises:
        UsageError: For a combination that cannot run (fashion_mnist at another size).
    """
    from atalp_keras.errors import UsageError

    s = dataclasses.replace(settings)
    shape = INPUT_SHAPES[s.model]
    digits = shape == (8, 8, 1)
    data = s.data if s.data != "auto" else ("digits" if digits else "random")
    if data == "fashion_mnist" and shape != (28, 28, 1):
        raise UsageError(f"--data=fashion_mnist needs a 28x28 model. Received: --model={s.model}")
    small = shape != (32, 32, 3)
    eps = s.eps if s.eps is not None else (0.1 if small else 8 / 255)
    quick = s.quick
    return {
        "model": s.model,
        "data": data,
        "input_shape": list(shape),
        "random_images": s.random_images,
        "batch_size": s.batch_size or DEFAULT_BATCH[shape],
        "pgd_steps": s.pgd_steps,
        "eps": eps,
        "step_size": s.step_size if s.step_size is not None else eps / 4,
        "timed_epochs": s.timed_epochs or (3 if quick else 10),
        "steps_per_epoch": s.steps_per_epoch or (None if small else 2),
        "presets": [p for p in (s.presets or (
            "standard,pat,at_alp" if quick else ",".join(PRESETS))).split(",") if p],
        "jits": [j for j in s.jit_compile.split(",") if j],
        "sections": [x for x in s.sections.split(",") if x],
        "attacks": [a for a in (s.attacks or (
            "fgsm,pgd20,pgd20-nors" if quick else
            "fgsm,pgd20,pgd20-nors,apgd-ce,autoattack-fast,autoattack-standard")).split(",") if a],
        "attack_points": s.attack_points or (128 if quick else 360),
        "attack_batch": s.attack_batch,
        "attack_seconds": 10.0 if quick else 20.0,
        "art_batches": s.art_batches or (3 if quick else 8),
        "art_autoattack_points": s.art_autoattack_points,
        "eval_attacks": [a for a in s.eval_attacks.split(",") if a],
        "eval_points": s.eval_points,
        "eval_model": s.eval_model,
        "rays_queries": s.rays_queries,
        "prepare_epochs": s.prepare_epochs if s.prepare_epochs is not None else
        ((20 if quick else 30) if data != "random" else 0),
        "unit_seconds": 0.5 if quick else 1.5,
        "step_seconds": 5.0 if quick else 20.0,
        "epoch_rounds": s.epoch_rounds or ((4 if quick else 12) if small else 1),
        "levers": (not quick) if s.levers is None else s.levers,
        "art": s.art,
        "spe": s.spe,
        # Big models (seconds per call on a CPU) get fewer timed calls.
        "min_rounds": 7 if digits else 3,
        "warmup_calls": 2 if digits else 1,
        "seed": s.seed,
    }


def validate(cfg):
    """Raises UsageError for unknown presets, sections or jit variants."""
    from atalp_keras.errors import UsageError

    for name, values, allowed in (("presets", cfg["presets"], PRESETS),
                                  ("sections", cfg["sections"], SECTIONS),
                                  ("jit_compile", cfg["jits"], ("none", "step", "attack")),
                                  ("eval_attacks", cfg["eval_attacks"],
                                   ("autoattack", "pgd", "rays"))):
        unknown = [v for v in values if v not in allowed]
        if unknown:
            raise UsageError(f"--{name} takes a comma list of {', '.join(allowed)}. "
                             f"Received: --{name}={','.join(values)}")
    return cfg
