"""Named recipes (``--preset``) and the ``--quick`` variant.

A preset gives every `Settings` field and the training recipe (`TrainConfig`
field names). `resolve` layers, lowest first: the `Settings` defaults, the
preset, ``--quick``, then whatever the command line gave explicitly.
"""

import dataclasses

from atalp_keras.reproduction import settings as settings_lib

ALL_METHODS = ("standard", "pat", "alp", "at", "at_alp", "trades", "fast")

PRESETS = {
    # The digits report of docs/results.md (the defaults before presets).
    "digits": {
        "recipe": {"dataset": "digits", "data_seed": 0, "model": "tiny",
                   "tiny_widths": (8, 16, 16, 32), "augment": "none", "eps": 0.2,
                   "step_size": 0.05, "num_steps": None, "epochs": 20, "batch_size": 64,
                   "optimizer": "sgd", "learning_rate": 0.05, "momentum": 0.9,
                   "lr_schedule": "cosine", "weight_decay": 5e-4, "verbose": 0},
        "methods": ALL_METHODS, "seeds": (0, 1, 2), "blackbox_model": "tiny_deep",
        "at_weights": (0.1, 0.3, 1.0, 3.0), "alp_weights": (0.1, 0.5, 1.0),
        "eval_eps": (0.2, 0.3), "iterations": (10, 20, 50, 100, 200),
        "curve_eps": (0.05, 0.1, 0.15, 0.25), "out": "runs/reproduce",
        "report": "docs/results.md",
    },
    # Issue 12: Fashion-MNIST at eps 0.1 (and pat/alp/at_alp at eps 0.3). The
    # recipe equals the background pre-training's, so its models are reused.
    "fmnist": {
        "recipe": {"dataset": "fashion_mnist", "model": "fmnist", "eps": 0.1,
                   "step_size": 0.025, "num_steps": None, "epochs": 5, "batch_size": 128,
                   "optimizer": "sgd", "learning_rate": 0.05, "momentum": 0.9,
                   "lr_schedule": "cosine", "weight_decay": 5e-4, "verbose": 2},
        "methods": ALL_METHODS, "seeds": (0,), "more_seeds": (1,),
        "more_seeds_methods": ("pat", "alp", "at_alp"),
        # Gray box: the other seed's model; black box: one pat model on the
        # deeper ResNet for every method (three trainings fewer than a source
        # per method, issue 12's budget).
        "source_methods": ("pat", "alp", "at_alp"), "blackbox_model": "fmnist_deep",
        "gray_from_seeds": True, "blackbox_method": "pat",
        "also_eps": (0.3,), "also_eps_methods": ("pat", "alp", "at_alp"),
        "at_weights": (0.01, 0.03, 0.1, 0.3, 1.0), "alp_weights": (0.1, 0.5, 1.0),
        "val_fraction": 0.1, "max_val_examples": 1000, "sweep_epochs": 3,
        "sweep_train_examples": 10000,
        "eval_eps": (0.1,), "num_test": 1000, "pgd_steps": 50, "pgd_restarts": 5,
        "square_queries": 5000, "rays_queries": 1000, "audit": True,
        "iterations": (10, 20, 50, 100, 200), "curve_eps": (0.03, 0.05, 0.15, 0.2, 0.3),
        "figure_methods": ("pat", "alp", "at_alp"), "landscape_images": 16,
        # pat's clean accuracy after 5 epochs is short of the published 88.5%
        # (and of issue 12's 88% bar): one pat model trained three times longer
        # measures what the epochs buy.
        "longer_epochs": 15, "longer_methods": ("pat",),
        "out": "runs/fmnist_eps{eps}", "report": "docs/results_fmnist.md",
        # Published numbers the report sets beside ours (clean %, robust %).
        "published": "fmnist",
    },
}

# Smaller numbers of --quick (on top of the preset).
QUICK = {
    "seeds": (0,), "more_seeds": (), "epochs": 5, "at_weights": (0.3, 1.0),
    "alp_weights": (0.5,), "sweep_epochs": 0, "sweep_train_examples": 0, "num_test": 120,
    "autoattack": "fast", "square_queries": 0, "rays_queries": 500,
    "iterations": (10, 20, 50), "curve_eps": (0.1,), "attention_images": 2,
    "landscape_images": 8, "landscape_points": 11, "also_eps": (), "longer_epochs": 0,
    "out": "runs/reproduce_quick",
}

PUBLISHED = {
    "fmnist": [
        {"eps": 0.1, "method": "pat", "source": "Croce, Andriushchenko & Hein, AISTATS 2019, "
         "Table 1 (small CNN, PGD-AT, first 1,000 test points)", "clean": 88.5,
         "robust": 78.5, "robust_note": "at most (upper bound)"},
        {"eps": 0.3, "method": "pat", "source": "MTandHJ/PyTorch-Robust (small CNN, "
         "AutoAttack), AT", "clean": 77.8, "robust": 46.0, "robust_note": "AutoAttack"},
        {"eps": 0.3, "method": "alp", "source": "MTandHJ/PyTorch-Robust (small CNN, "
         "AutoAttack), ALP lambda 0.5", "clean": 83.1, "robust": 24.3,
         "robust_note": "AutoAttack (55.8 under PGD-100)"},
        {"eps": 0.3, "method": "trades", "source": "MTandHJ/PyTorch-Robust (small CNN, "
         "AutoAttack), TRADES beta 6", "clean": 78.1, "robust": 34.2,
         "robust_note": "AutoAttack"},
    ],
}


def resolve(preset, quick=False, explicit=None, explicit_recipe=None):
    """The `Settings` of ``preset`` (+ ``quick``) with ``explicit`` fields and
    ``explicit_recipe`` TrainConfig values (given on the command line) on top.

    Raises:
        UsageError: For an unknown preset or a bad combination (`settings.check`).
    """
    if preset not in PRESETS:
        raise settings_lib.UsageError(f"--preset must be one of {', '.join(PRESETS)}. "
                                      f"Received: preset={preset!r}")
    values = {k: v for k, v in PRESETS[preset].items() if k not in ("recipe", "published")}
    recipe = dict(PRESETS[preset]["recipe"])
    if quick:
        for key, value in QUICK.items():
            (recipe if key in settings_lib.RECIPE_FIELDS else values)[key] = value
    values.update(explicit or {})
    recipe.update(explicit_recipe or {})
    values.update(preset=preset, quick=quick, recipe=recipe)
    known = {f.name for f in dataclasses.fields(settings_lib.Settings)}
    s = settings_lib.Settings(**{k: v for k, v in values.items() if k in known})
    if not s.figures_dir:
        s.figures_dir = s.report[:-3] if s.report.endswith(".md") else s.report + "_figures"
    return settings_lib.check(s)


def published(preset):
    """The published rows the report of ``preset`` compares with."""
    return PUBLISHED.get(PRESETS.get(preset, {}).get("published"), [])
