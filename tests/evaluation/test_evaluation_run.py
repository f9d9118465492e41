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


def test_bad_inputs_are_refused_before_any_attack(tiny_problem):
    from atalp_keras.errors import UsageError

    model, x, y = tiny_problem
    with pytest.raises(UsageError, match="divide by 255"):
        evaluation.evaluate_model(model, x * 255, y, [("pgd", {"eps": 0.1})], verbose=0)
