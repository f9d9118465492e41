"""evaluate_model: the records of a suite, transfer, extras and input checks."""

import json

import keras
import numpy as np
import pytest

from atalp_keras import attacks, evaluation
from conftest import small_cnn
from evaluation_problem import tiny_problem  # noqa: F401 (a fixture)




def test_evaluate_model_records(tiny_problem, capsys):
    model, x, y = tiny_problem
    suite = evaluation.build_attacks([("fgsm", {}), ("pgd", {})], [0.3],
                                     num_steps=3, seed=1)
    records = evaluation.evaluate_model(model, x, y, suite, batch_size=10,
                                        model_name="cnn", method="standard")
    assert [r["attack"] for r in records] == ["none", "fgsm", "pgd", "worst-case"]
    clean, fgsm, pgd, worst = records
    assert clean["accuracy"] == pytest.approx(20 / 24)
    assert (clean["eps"], clean["num_steps"], clean["restarts"]) == (0.0, 0, 0)
    for r in records:
        assert {"model", "method", "attack", "eps", "num_steps", "step_size",
                "restarts", "n", "accuracy", "seconds"} <= set(r)
        assert (r["model"], r["method"], r["n"]) == ("cnn", "standard", 24)
    assert (pgd["num_steps"], pgd["restarts"], pgd["random_start"]) == (3, 1, True)
    assert pgd["threat_model"] == "white-box"
    assert 0 < pgd["max_perturbation"] <= 0.3 + 1e-6
    assert worst["components"] == ["fgsm", "pgd"]
    assert worst["accuracy"] <= min(fgsm["accuracy"], pgd["accuracy"])
    assert "pgd eps=0.3 steps=3" in capsys.readouterr().out

    # Transfer: examples made on a source model, scored on the target.
    source = small_cnn(seed=1)
    transfer = evaluation.evaluate_model(model, x, y, [("pgd", {"eps": 0.3})],
                                         source=source, source_name="other",
                                         verbose=0)
    assert transfer[1]["threat_model"] == "transfer"
    assert transfer[1]["source"] == "other"


def _hand_made_1_pixel_classifier():
    """Two classes on one pixel x: logit(1) - logit(0) = d(x), piecewise
    linear with d(0) = -0.15, d(0.2) = 0.1, d(0.4) = -0.3, d(1) = 0.3
    (slopes +1.25, -2, +1)."""
    inputs = keras.Input((1, 1, 1))
    hidden = keras.layers.Dense(3, activation="relu")(keras.layers.Flatten()(inputs))
    outputs = keras.layers.Dense(2)(hidden)
    model = keras.Model(inputs, outputs)
    # hidden: relu(x), relu(x - 0.2), relu(x - 0.4); d = 1.25 h0 - 3.25 h1 + 3 h2 - 0.15.
    model.layers[2].set_weights([np.ones((1, 3), np.float32),
                                 np.array([0.0, -0.2, -0.4], np.float32)])
    slopes = np.array([1.25, -3.25, 3.0], np.float32)
    model.layers[3].set_weights([np.stack([-slopes / 2, slopes / 2], -1),
                                 np.array([0.075, -0.075], np.float32)])
    return model


def test_the_worst_case_is_per_image_not_the_lowest_accuracy():
    """FGSM (one step of eps 0.4) and PGD (one step of 0.1, no random start)
    fool different images, so the per-image worst case (0.25) is below both
    accuracies (0.5). Hand-computed on d(x):
      A x=0.55 y=0: d=-0.15; FGSM -> 0.95, d=+0.25 fooled; PGD -> 0.65, d=-0.05 not.
      B x=0.30 y=0: d=-0.10; FGSM -> 0 (clipped), d=-0.15 not; PGD -> 0.2, d=+0.1 fooled.
      C x=0.00 y=0: d=-0.15; FGSM -> 0.4, d=-0.3 not; PGD -> 0.1, d=-0.025 not.
      D x=0.45 y=1: d=-0.25, a clean mistake that stays one.
    """
    model = _hand_made_1_pixel_classifier()
    x = np.array([0.55, 0.3, 0.0, 0.45], np.float32).reshape(4, 1, 1, 1)
    y = np.array([0, 0, 0, 1], np.int32)
    d = model.predict(x, verbose=0) @ np.array([-1.0, 1.0])
    np.testing.assert_allclose(d, [-0.15, -0.1, -0.15, -0.25], atol=1e-6)
    suite = [attacks.FGSMAttack(0.4), attacks.PGDAttack(0.4, step_size=0.1, num_steps=1,
                                                        random_start=False)]
    records = evaluation.evaluate_model(model, x, y, suite, verbose=0)
    accuracy = {r["attack"]: r["accuracy"] for r in records}
    assert accuracy == {"none": 0.75, "fgsm": 0.5, "pgd": 0.5, "worst-case": 0.25}


def test_records_carry_the_attacks_extras_and_real_steps(tiny_problem, capsys):
    model, x, y = tiny_problem
    suite = [attacks.AutoAttack(0.3, version="fast", num_steps=3, n_target_classes=2, seed=0),
             attacks.RaySAttack(0.3, n_queries=40)]
    auto, rays = evaluation.evaluate_model(model, x, y, suite, batch_size=10)[1:3]
    assert auto["num_steps"] == 3
    assert [s["component"] for s in auto["stages"]] == ["clean", "apgd-ce", "apgd-t"]
    assert auto["stages"][-1]["robust_accuracy"] == pytest.approx(auto["accuracy"])
    assert {"robust_accuracy", "seconds", "n"} <= set(auto["stages"][1])
    assert rays["mean_queries"] <= 40 and 0 <= rays["mean_distance"] <= 1
    json.dumps([auto, rays])  # JSON-sized: no per-example arrays
    out, err = capsys.readouterr()
    assert "autoattack-fast eps=0.3 steps=3" in out
    assert "autoattack-fast stage 1/2: apgd-ce" in err  # progress on stderr


def test_a_resumed_autoattack_is_timed_with_its_earlier_calls(tiny_problem, tmp_path):
    model, x, y = tiny_problem
    attack = attacks.AutoAttack(0.3, version="fast", num_steps=3, n_target_classes=2, seed=0,
                                resume_file=tmp_path / "aa.npz")
    first = evaluation.evaluate_model(model, x, y, [attack], batch_size=10, verbose=0)[1]
    # Every stage is in the file: the second call only reads it, yet the
    # record keeps the seconds the stages took in the first.
    again = evaluation.evaluate_model(model, x, y, [attack], batch_size=10, verbose=0)[1]
    assert again["correct"] == first["correct"] and again["stages"] == first["stages"]
    assert again["seconds"] == pytest.approx(sum(s["seconds"] for s in first["stages"]),
                                             abs=2e-3)
    assert evaluation.run.attack_seconds(5.0, [{"seconds": 1.5}, {"seconds": 2.0}]) == 5.0
    assert evaluation.run.attack_seconds(1.0, [{"seconds": 1.5}, {"seconds": 2.0}]) == 3.5
    assert evaluation.run.attack_seconds(1.0, None) == 1.0


def test_bad_inputs_are_refused_before_any_attack(tiny_problem):
    from atalp_keras.errors import UsageError

    model, x, y = tiny_problem
    with pytest.raises(UsageError, match="divide by 255"):
        evaluation.evaluate_model(model, x * 255, y, [("pgd", {"eps": 0.1})], verbose=0)
