"""The gradient-masking audit: clean verdicts on an honest model, warnings on
a model whose gradients are masked, FAIL on an out-of-ball record."""

import keras
import numpy as np
import pytest

from atalp_keras import audit
from atalp_keras.attacks import PGDAttack, SquareAttack
from atalp_keras.evaluation import evaluate_model

N = 100


@keras.saving.register_keras_serializable(package="atalp_keras_tests")
class Quantize(keras.layers.Layer):
    """Rounds pixels to 4 levels: zero gradient almost everywhere, the classic
    masked-gradient "defense" that PGD cannot attack but Square can."""

    def call(self, x):
        return keras.ops.round(x * 3.0) / 3.0


@pytest.fixture(scope="module")
def masked_model(undefended_model):
    inputs = keras.Input((8, 8, 1))
    return keras.Model(inputs, undefended_model(Quantize()(inputs)))


def _points(digits):
    return digits[2][:N], digits[3][:N]


def test_honest_model_passes(digits, undefended_model):
    x, y = _points(digits)
    records = evaluate_model(undefended_model, x, y,
                             [PGDAttack(0.1, 0.025, 10, seed=0), SquareAttack(0.1, 300, seed=0)],
                             verbose=0)
    checks = {c["check"]: c for c in audit.audit(records, undefended_model, x, y, eps=0.1)}
    assert checks["perturbation_bounds"]["status"] == "PASS"
    assert checks["logits"]["status"] == "PASS"
    assert checks["gradients"]["status"] == "PASS"
    assert checks["iterative_vs_single_step"]["status"] == "PASS"
    assert checks["single_step_vs_clean"]["status"] == "PASS"
    assert checks["large_eps"]["status"] == "PASS"
    assert checks["gradient_free_vs_white_box"]["status"] == "PASS"


def test_masked_gradients_are_flagged(digits, masked_model):
    x, y = _points(digits)
    records = evaluate_model(masked_model, x, y,
                             [PGDAttack(0.1, 0.025, 10, seed=0), SquareAttack(0.1, 300, seed=0)],
                             verbose=0)
    pgd = next(r for r in records if r["attack"] == "pgd")["accuracy"]
    square = next(r for r in records if r["attack"] == "square")["accuracy"]
    assert square < pgd - 0.2  # the defense "works" only against gradients
    checks = {c["check"]: c for c in audit.audit(records, masked_model, x, y, eps=0.1)}
    assert checks["gradient_free_vs_white_box"]["status"] == "WARN"
    assert f"{square:.3f}" in checks["gradient_free_vs_white_box"]["detail"]
    assert checks["gradients"]["status"] == "WARN"
    assert checks["large_eps"]["status"] == "WARN"


def test_out_of_ball_record_fails():
    records = [{"attack": "pgd", "eps": 0.1, "accuracy": 0.5, "max_perturbation": 0.2},
               {"attack": "square", "eps": 0.1, "accuracy": 0.5, "max_perturbation": 0.1,
                "min_pixel": -0.01, "max_pixel": 1.0}]
    check = audit.check_bounds(records)
    assert check["status"] == "FAIL"
    assert "0.2" in check["detail"] and "-0.01" in check["detail"]
    assert audit.has_failure([check])


def test_probabilities_are_flagged(digits, undefended_model):
    inputs = keras.Input((8, 8, 1))
    probs = keras.Model(inputs, keras.layers.Softmax()(undefended_model(inputs)))
    check = audit.check_logits(probs, digits[2][:16])
    assert check["status"] == "WARN" and "probabilities" in check["detail"]


def test_probe_verdicts_on_hand_made_numbers():
    ok = {"fgsm": 0.5, "pgd": 0.4, "pgd_more_steps": 0.39, "pgd_restarts": 0.39,
          "pgd_eps_1": 0.0}
    assert [c["status"] for c in audit.check_probes(ok, 10, 0.1, n=100)] == ["PASS"] * 4
    bad = {"fgsm": 0.3, "pgd": 0.5, "pgd_more_steps": 0.3, "pgd_restarts": 0.2,
           "pgd_eps_1": 0.4}
    assert [c["status"] for c in audit.check_probes(bad, 10, 0.1, n=100)] == ["WARN"] * 4


def test_fgsm_above_clean_accuracy_is_flagged_beyond_noise():
    """Catastrophic overfitting (the Fashion-MNIST `fast` model: FGSM 86.4%
    against 80.8% clean): the one-step attack raises accuracy."""
    probes = {"fgsm": 0.88, "pgd": 0.40, "pgd_more_steps": 0.40, "pgd_restarts": 0.40,
              "pgd_eps_1": 0.0, "clean": 0.80}
    checks = audit.check_probes(probes, 10, 0.1, n=200)
    assert checks[0]["check"] == "single_step_vs_clean"
    # P(X >= 176 | n = 200, p = 0.80) = 0.0020 < 0.05.
    assert checks[0]["status"] == "WARN" and "0.880" in checks[0]["detail"]
    # 164 of 200 against 0.80: P(X >= 164) = 0.27, noise.
    probes["fgsm"] = 0.82
    assert audit.check_probes(probes, 10, 0.1, n=200)[0]["status"] == "PASS"
    # An attack at or below clean accuracy is what an attack should do.
    probes["fgsm"] = 0.30
    assert audit.check_probes(probes, 10, 0.1, n=200)[0]["status"] == "PASS"


def test_skip_without_gradient_free_results():
    records = [{"attack": "pgd", "eps": 0.1, "accuracy": 0.4, "max_perturbation": 0.1}]
    assert audit.check_gradient_free_vs_white_box(records)["status"] == "SKIP"


def test_much_more_and_much_less_use_a_binomial_test_at_the_sample_size():
    """Issue 12: 4 points of difference is noise on 100 points, real on 2,000
    (a fixed 3-point tolerance called both real)."""
    probes = {"fgsm": 0.40, "pgd": 0.44, "pgd_more_steps": 0.40, "pgd_restarts": 0.40,
              "pgd_eps_1": 0.0}
    small = [c["status"] for c in audit.check_probes(probes, 10, 0.1, n=100)]
    large = [c["status"] for c in audit.check_probes(probes, 10, 0.1, n=2000)]
    assert small == ["PASS"] * 4
    assert large == ["WARN", "WARN", "WARN", "PASS"]
    records = [{"attack": "pgd", "eps": 0.1, "accuracy": 0.44, "n": 100},
               {"attack": "square", "eps": 0.1, "accuracy": 0.40, "n": 100}]
    assert audit.check_gradient_free_vs_white_box(records)["status"] == "PASS"
    for r in records:
        r["n"] = 2000
    assert audit.check_gradient_free_vs_white_box(records)["status"] == "WARN"


def test_audit_is_the_evaluation_module():
    from atalp_keras import evaluation

    assert audit is evaluation.audit


def _autoattack(after_gradient, after_square, n=1000):
    return {"attack": "autoattack", "eps": 0.3, "n": n, "accuracy": after_square,
            "stages": [{"component": "clean", "robust_accuracy": 0.78},
                       {"component": "apgd-ce", "robust_accuracy": 0.57},
                       {"component": "apgd-t", "robust_accuracy": 0.545},
                       {"component": "fab-t", "robust_accuracy": after_gradient},
                       {"component": "square", "robust_accuracy": after_square}]}


def test_standard_autoattack_counts_by_its_gradient_stages():
    """Standard AutoAttack ends with Square: compared whole with Square alone it
    can never lose, so a model whose gradients mislead (fmnist pat at eps 0.3:
    gradient stages 54.1%, Square 47.0%) passed. Its gradient stages are what
    the gradient-free attack is weighed against."""
    records = [{"attack": "pgd", "eps": 0.3, "n": 1000, "accuracy": 0.606},
               _autoattack(0.541, 0.470),
               {"attack": "square", "eps": 0.3, "n": 1000, "accuracy": 0.470}]
    check = audit.check_gradient_free_vs_white_box(records)
    assert check["status"] == "WARN"
    assert "autoattack (apgd-ce+apgd-t+fab-t) 0.541 vs square 0.470" in check["detail"]
    # Square adding nothing beyond the gradient stages passes.
    records[1], records[2]["accuracy"] = _autoattack(0.541, 0.540), 0.545
    check = audit.check_gradient_free_vs_white_box(records)
    assert check["status"] == "PASS"
    assert "autoattack (apgd-ce+apgd-t+fab-t) 0.541" in check["detail"]


def test_autoattack_without_stages_is_not_a_white_box_gradient_record():
    records = [{"attack": "autoattack", "eps": 0.1, "n": 1000, "accuracy": 0.40},
               {"attack": "square", "eps": 0.1, "n": 1000, "accuracy": 0.40}]
    assert audit.check_gradient_free_vs_white_box(records)["status"] == "SKIP"
    assert audit.gradient_stages(records[0]) is None
