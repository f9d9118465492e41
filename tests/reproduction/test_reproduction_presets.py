"""Presets: the fmnist recipe reproduces the background pre-training's
TrainConfigs exactly (so those models are reused), and explicit flags win."""

import pytest

from atalp_keras.errors import UsageError
from atalp_keras.reproduction import models, presets
from atalp_keras.training import TrainConfig


def _pretraining_config(eps, method, seed, model_dir):
    # The configuration the background job trained (runner/train_fmnist.py).
    return TrainConfig(
        dataset="fashion_mnist", model="fmnist", method=method, eps=eps, step_size=eps / 4,
        num_steps=None, eval_pgd_steps=0, epochs=10, batch_size=128, optimizer="sgd",
        learning_rate=0.05, momentum=0.9, lr_schedule="cosine", weight_decay=5e-4,
        seed=seed, model_dir=model_dir, export=False, verbose=2)


@pytest.mark.parametrize("eps,method,seed", [(0.1, "pat", 0), (0.1, "alp", 1),
                                             (0.1, "standard", 0), (0.3, "pat", 0),
                                             (0.3, "alp", 0)])
def test_fmnist_preset_equals_the_pretrained_configs(eps, method, seed):
    s = presets.resolve("fmnist")
    model_dir = models.main_dir(s, method, seed, eps)
    assert model_dir == f"runs/fmnist_eps{eps:g}/models/{method}/seed{seed}"
    config = models.train_config(s, method, seed, model_dir, eps)
    assert config == _pretraining_config(eps, method, seed, model_dir)


def test_fmnist_preset_plan_matches_issue_12():
    s = presets.resolve("fmnist")
    assert s.eps == 0.1 and tuple(s.also_eps) == (0.3,)
    assert s.seeds_of("pat") == s.seeds_of("at_alp") == (0, 1)
    assert s.seeds_of("trades") == (0,)
    assert s.has_sources("alp") and not s.has_sources("standard")
    assert min(s.at_weights) < 0.1 and s.sweep_epochs < s.recipe["epochs"]
    assert s.num_test >= 1000 and s.pgd_steps == 50 and s.pgd_restarts == 5
    assert s.square_queries == 5000 and s.autoattack == "standard"
    assert s.report == "docs/results_fmnist.md" and s.figures_dir == "docs/results_fmnist"


def test_explicit_values_win_over_preset_and_quick():
    s = presets.resolve("fmnist", quick=True, explicit={"num_test": 7},
                        explicit_recipe={"epochs": 2})
    assert s.num_test == 7 and s.recipe["epochs"] == 2
    assert s.recipe["dataset"] == "fashion_mnist" and s.rays_queries == 500
    digits = presets.resolve("digits")
    assert digits.recipe["eps"] == 0.2 and digits.seeds == (0, 1, 2)


def test_bad_combinations_raise_usage_errors():
    with pytest.raises(UsageError, match="preset"):
        presets.resolve("cifar")
    with pytest.raises(UsageError, match="source_seed"):
        presets.resolve("digits", explicit={"source_seed": 1})
    with pytest.raises(UsageError, match="blackbox_model"):
        presets.resolve("fmnist", explicit={"blackbox_model": "fmnist"})
    with pytest.raises(UsageError, match="out"):
        presets.resolve("fmnist", explicit={"out": "runs/x"})
