"""AutoAttack: per-example at least as strong as each component, the stage
report, progress, and no retracing across calls."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from atalp_keras.attacks import AutoAttack, get_attack

from attack_checks import EPS, N, assert_valid, correct, points  # noqa: F401 (a fixture)


def test_autoattack_is_per_example_as_strong_as_each_component(undefended_model, points):
    """Every point a component breaks alone (same seed, same settings) is
    broken by AutoAttack too. Exact per example: each component's randomness
    is keyed by (seed, example index, round), so it does the same thing to a
    point inside AutoAttack (on the survivors of earlier stages) as alone.
    eps 0.05 leaves ~60% robust after APGD-CE, so the later stages have work.
    """
    x, y = points
    eps = 0.05
    budgets = dict(num_steps=10, n_target_classes=3, n_queries=300)
    auto = AutoAttack(eps, seed=0, **budgets)
    result = auto.run(undefended_model, x, y)
    x_adv = result.x_adv
    assert_valid(x_adv, x, eps)
    robust = correct(undefended_model, x_adv, y)
    np.testing.assert_array_equal(robust, result.extras["robust"])
    np.testing.assert_array_equal(result.success, correct(undefended_model, x, y) & ~robust)

    report = result.extras["report"]
    assert [r["component"] for r in report] == ["clean", "apgd-ce", "apgd-t", "fab-t", "square"]
    accuracies = [r["robust_accuracy"] for r in report]
    assert accuracies == sorted(accuracies, reverse=True)
    assert accuracies[-1] == pytest.approx(robust.mean())
    for before, after in zip(report[:-1], report[1:]):
        assert after["n"] == round(before["robust_accuracy"] * N)
        assert after["seconds"] >= 0
    assert accuracies[0] - accuracies[-1] >= 0.3

    for component in auto.components():
        alone = correct(undefended_model, component.perturb(undefended_model, x, y), y)
        broken_alone = correct(undefended_model, x, y) & ~alone
        assert not np.any(broken_alone & robust), component.name
        assert robust.sum() <= alone.sum()


def test_autoattack_fast_runs_apgd_only(undefended_model, points):
    x, y = points
    auto = get_attack("autoattack-fast", eps=EPS, num_steps=10, n_target_classes=3, seed=0)
    result = auto.run(undefended_model, x, y)
    assert_valid(result.x_adv, x, EPS)
    report = result.extras["report"]
    assert [r["component"] for r in report] == ["clean", "apgd-ce", "apgd-t"]
    assert report[-1]["robust_accuracy"] <= 0.15
    assert {b for b in result.extras["broken_by"] if b} <= {"apgd-ce", "apgd-t"}


class TraceCounter(keras.layers.Layer):
    """Counts Python executions of ``call``: one per trace of any function
    that calls the model (or per eager call)."""

    traces = 0

    def call(self, x):
        type(self).traces += 1
        return x


def test_autoattack_traces_once_per_model_across_calls(undefended_model, points):
    """Issue 11: the components are built and traced once per model, not per
    call; a second call (other points, other batch size) traces nothing."""
    x, y = points
    inputs = keras.Input((8, 8, 1))
    model = keras.Model(inputs, undefended_model(TraceCounter()(inputs)))
    auto = AutoAttack(0.05, num_steps=3, n_target_classes=2, n_queries=30, seed=0)
    first = auto.run(model, x[:40], y[:40], batch_size=16)
    traces = TraceCounter.traces
    assert traces > 0
    second = auto.run(model, x[40:100], y[40:100], batch_size=25)
    assert TraceCounter.traces == traces
    again = auto.run(model, x[:40], y[:40], batch_size=16)
    assert TraceCounter.traces == traces
    # Seeded: a call repeats what a freshly built attack does.
    np.testing.assert_array_equal(again.x_adv, first.x_adv)
    assert [r["component"] for r in second.extras["report"]][0] == "clean"


def test_progress_goes_to_stderr_per_stage(undefended_model, points, capsys):
    x, y = points[0][:30], points[1][:30]
    auto = AutoAttack(0.05, num_steps=3, n_target_classes=2, n_queries=30, seed=0)
    auto.run(undefended_model, x, y, verbose=1)
    out, err = capsys.readouterr()
    assert out == ""
    for stage, name in enumerate(["apgd-ce", "apgd-t", "fab-t", "square"], start=1):
        assert f"autoattack stage {stage}/4: {name}" in err
    assert "robust accuracy" in err
    auto.run(undefended_model, x, y, verbose=0)
    assert capsys.readouterr() == ("", "")
