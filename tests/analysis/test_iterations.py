"""atalp_keras.analysis.iterations: accuracy against PGD-k (Figure 3)."""

import json

import numpy as np
import pytest

from atalp_keras import analysis
from atalp_keras.attacks import PGDAttack
from atalp_keras.errors import UsageError


def test_snapshot_equals_fresh_pgd(undefended_model, digits):
    x, y = digits[2][:64], digits[3][:64]
    snapshots = analysis.pgd_trajectory(undefended_model, x, y, eps=0.1, step_size=0.02,
                                        iterations=(1, 3, 8), random_start=False,
                                        batch_size=40)
    for k, x_adv in snapshots.items():
        fresh = PGDAttack(0.1, step_size=0.02, num_steps=k,
                          random_start=False).perturb(undefended_model, x, y)
        np.testing.assert_array_equal(x_adv, fresh)
    assert np.abs(snapshots[8] - x).max() <= 0.1 + 1e-6
    assert not np.array_equal(snapshots[1], snapshots[8])


def test_white_box_accuracy_falls_with_iterations(undefended_model, digits):
    x, y = digits[2][:200], digits[3][:200]
    iterations = (1, 2, 5, 10, 20)
    records = analysis.robust_accuracy_vs_iterations(
        undefended_model, x, y, [0.1], iterations=iterations, step_size=0.01, seed=3)
    assert [r["num_steps"] for r in records] == list(iterations)
    assert all(r["setting"] == "white" and r["n"] == 200 and r["eps"] == 0.1
               for r in records)
    accuracies = [r["accuracy"] for r in records]
    # No slack: from the same start, more small steps never helped the model here.
    assert all(a >= b for a, b in zip(accuracies, accuracies[1:])), accuracies
    assert accuracies[-1] < accuracies[0] - 0.2, accuracies
    json.dumps(records)

    # Restart 0 reuses the single-run start, and white-box restarts are judged
    # on the evaluated model, so more restarts can only lower accuracy.
    two = analysis.robust_accuracy_vs_iterations(
        undefended_model, x, y, [0.1], iterations=iterations, step_size=0.01, seed=3,
        restarts=2, batch_size=64)
    assert all(b["accuracy"] <= a["accuracy"] for a, b in zip(records, two))


def test_transfer_records_name_source(undefended_model, resnet, digits):
    x, y = digits[2][:50], digits[3][:50]
    records = analysis.robust_accuracy_vs_iterations(
        resnet, x, y, ["0.2"], iterations=(2, 4), step_size=0.05, source=undefended_model,
        target_name="resnet", source_name="black")
    assert {r["setting"] for r in records} == {"transfer"}
    assert {(r["source"], r["target"]) for r in records} == {("black", "resnet")}
    with pytest.raises(ValueError, match="0-255"):
        analysis.robust_accuracy_vs_iterations(resnet, x, y, [8], iterations=(2,))
    with pytest.raises(ValueError, match="increasing"):
        analysis.robust_accuracy_vs_iterations(resnet, x, y, [0.1], iterations=(5, 2))


@pytest.mark.parametrize("iterations, message", [
    ((5, 2), "increasing"), ((0, 3), "integers >= 1"), ((), "integers >= 1"),
    ((2.5,), "integers >= 1"),
])
def test_check_iterations_is_a_usage_error(iterations, message):
    # A flag value: the command line must show it as one line, not a traceback.
    with pytest.raises(UsageError, match=message):
        analysis.check_iterations(iterations)
    assert analysis.check_iterations([1, 4]) == [1, 4]
