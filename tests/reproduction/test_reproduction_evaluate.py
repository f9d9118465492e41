"""The per-model evaluation cache: which part settings decide reuse."""

import json
import types

import numpy as np

from atalp_keras.reproduction import evaluate, presets


def _keys(s, sources):
    entry = {"name": "pat_seed0", "dir": "unused", "eval_eps": (0.2,), "curve_eps": ()}
    x, y = np.zeros((2, 8, 8, 1), np.float32), np.zeros(2, np.int32)
    parts = evaluate._parts(s, entry, x, y, sources, types.SimpleNamespace(num_classes=10),
                            None, {})
    return {k: json.dumps(key, sort_keys=True, default=str) for k, (key, _) in parts.items()}


def test_a_transfer_curve_from_another_source_is_not_reused():
    s = presets.resolve("digits", quick=True)
    trained = _keys(s, {"gray": ("pat_gray_seed100", "g"), "black": ("pat_black_x", "b")})
    from_seed = _keys(s, {"gray": ("pat_seed1", "g1"), "black": ("pat_black_x", "b")})
    assert trained["iterations:gray"] != from_seed["iterations:gray"]
    assert trained["iterations:black"] == from_seed["iterations:black"]
    # The white-box curve and the attacks keep their keys (cached results stay valid).
    assert {k: v for k, v in trained.items() if k not in ("iterations:gray", "iterations:black")} \
        == _keys(s, {})


def test_autoattack_gradient_stages_and_the_masking_sentence():
    """pat at eps 0.3 on Fashion-MNIST: AutoAttack's gradient stages leave 54.1%,
    Square alone 47.0% on 1,000 images; the report must say Square carries it."""
    from atalp_keras.reproduction import discussion, report
    from atalp_keras.reproduction.evaluate import per_model_values

    def part(acc, **extra):
        return {"value": {"accuracy": acc, "correct": [1] * 10, **extra}}
    stages = [{"component": "clean", "robust_accuracy": 0.78},
              {"component": "apgd-ce", "robust_accuracy": 0.568},
              {"component": "fab-t", "robust_accuracy": 0.541},
              {"component": "square", "robust_accuracy": 0.47}]
    result = {"parts": {"clean": part(0.78), "pgd@0.3": part(0.606),
                        "autoattack@0.3": part(0.47, attack="autoattack", stages=stages),
                        "square@0.3": part(0.47)}}
    values = per_model_values(result, (0.3,))
    assert values[("autoattack_gradient", 0.3)] == 0.541
    run = {"eps": 0.3, "n": 1000, "agg": report.aggregate([("pat", values)], ["pat"], 1000)}
    text = discussion.masking(run, 200)
    assert "gradient stages (APGD-CE, APGD-T, FAB-T) leave 54.1, Square alone 47.0" in text
    assert "below them beyond the noise" in text
    # Square no stronger than the gradient stages: said so.
    stages[-1]["robust_accuracy"] = 0.54
    result["parts"]["square@0.3"] = part(0.545)
    values = per_model_values(result, (0.3,))
    run["agg"] = report.aggregate([("pat", values)], ["pat"], 1000)
    assert "not below them beyond the noise" in discussion.masking(run, 200)


def test_the_worst_case_is_per_image_not_the_lowest_accuracy():
    """Five images at eps 0.1: PGD fools image 0, Square image 1, AutoAttack
    images 0 and 2; image 3 is a clean mistake. Only image 4 survives
    everything: the worst case is 1/5, below the lowest accuracy (2/5)."""
    from atalp_keras.reproduction.evaluate import per_model_values

    def part(correct):
        return {"value": {"accuracy": sum(correct) / len(correct), "correct": correct}}
    result = {"parts": {"clean": part([1, 1, 1, 0, 1]),
                        "pgd@0.1": part([0, 1, 1, 0, 1]),
                        "square@0.1": part([1, 0, 1, 0, 1]),
                        "autoattack@0.1": part([0, 1, 0, 0, 1]),
                        "pgd@0.2": part([0, 1, 0, 0, 0]),
                        "square@0.2": part([1, 0, 0, 0, 0])}}
    values = per_model_values(result, (0.1, 0.2))
    assert (values[("pgd", 0.1)], values[("square", 0.1)],
            values[("autoattack", 0.1)]) == (0.6, 0.6, 0.4)
    assert values[("worst-case", 0.1)] == 0.2
    assert values[("worst-case", 0.2)] == 0.0  # each fools what the other leaves
