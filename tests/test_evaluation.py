"""Attack suites and result records (atalp_keras.evaluation), the flag-value
parsers (atalp_keras.cli) and TrainConfig checks (atalp_keras.training)."""

import json

import keras
import numpy as np
import pytest

from atalp_keras import attacks, cli, evaluation
from conftest import small_cnn


def test_parse_fraction_and_eps():
    assert cli.parse_fraction("8/255") == pytest.approx(8 / 255)
    assert cli.parse_fraction(" 64 / 256 ") == 0.25
    assert cli.parse_fraction("3e-2") == 0.03
    assert cli.parse_eps("0.5") == 0.5
    for bad in ("8/", "abc", "1/0", ""):
        with pytest.raises(ValueError, match="fraction such as 8/255"):
            cli.parse_fraction(bad, "eps")
    with pytest.raises(ValueError, match="did you mean eps=8/255"):
        cli.parse_eps("8")
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        cli.parse_eps("0")


def test_parse_attack_list_with_options():
    requests = evaluation.parse_attack_list(
        "fgsm, pgd:num_steps=50:restarts=5:step_size=1/256,none")
    assert requests == [("fgsm", {}),
                        ("pgd", {"num_steps": 50, "restarts": 5,
                                 "step_size": 1 / 256}),
                        ("none", {})]
    with pytest.raises(ValueError, match="Unknown attack 'bogus'.*fgsm, pgd"):
        evaluation.parse_attack_list("fgsm,bogus")
    with pytest.raises(ValueError, match="takes no option"):
        evaluation.parse_attack_list("pgd:queries=10")
    with pytest.raises(ValueError, match="name:key=value"):
        evaluation.parse_attack_list("pgd:50")
    with pytest.raises(ValueError, match="No attacks"):
        evaluation.parse_attack_list(" , ")


def test_build_attacks_passes_suite_settings_to_who_takes_them():
    built = evaluation.build_attacks(
        evaluation.parse_attack_list("none,fgsm,pgd,pgd:restarts=3"),
        eps_values=[0.1, 8 / 255], num_steps=20, restarts=2,
        queries=1000, seed=7)
    assert built[0] is None
    fgsm = built[1:3]
    assert [a.describe()["eps"] for a in fgsm] == [0.1, 8 / 255]
    # FGSM stays one step of size eps whatever the suite's num_steps.
    assert all(a.num_steps == 1 and a.step_size == a.eps and a.restarts == 1
               for a in fgsm)
    pgd, pgd_restarts = built[3], built[5]
    assert (pgd.num_steps, pgd.restarts, pgd.seed) == (20, 2, 7)
    assert pgd.step_size == pytest.approx(2.5 * 0.1 / 20)  # PGD's default.
    assert pgd_restarts.restarts == 3  # The per-attack option wins.
    with pytest.raises(ValueError, match="at least one eps"):
        evaluation.build_attacks([("pgd", {})], [])
    with pytest.raises(ValueError, match="0-255 scale"):
        evaluation.build_attacks([("pgd", {})], [8])


def test_a_newly_registered_attack_plugs_in_by_name(monkeypatch):
    class QueryAttack(attacks.PGDAttack):
        name = "query-test"

        def __init__(self, eps, max_queries=100, seed=None):
            super().__init__(eps, num_steps=1, seed=seed)
            self.max_queries = max_queries

        def get_config(self):
            return {**super().get_config(), "max_queries": self.max_queries}

    monkeypatch.setitem(attacks.ATTACKS, "query-test", QueryAttack)
    (attack,) = evaluation.build_attacks(
        evaluation.parse_attack_list("query-test"), [0.1], num_steps=20,
        restarts=4, queries=500)
    assert attack.max_queries == 500  # --queries reaches its max_queries.


@pytest.fixture(scope="module")
def tiny_problem():
    keras.utils.set_random_seed(0)
    model = small_cnn()
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(24, 8, 8, 1)).astype("float32")
    y = np.argmax(model.predict(x, verbose=0), -1).astype("int32")
    y[:4] = (y[:4] + 1) % 10  # Four clean mistakes.
    return model, x, y


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


def test_write_results_and_table(tiny_problem, tmp_path):
    model, x, y = tiny_problem
    records = evaluation.evaluate_model(
        model, x, y, [attacks.PGDAttack(8 / 255, num_steps=2, seed=0)], verbose=0,
        model_name="cnn")
    table = evaluation.write_results(records, tmp_path / "out")
    assert json.loads((tmp_path / "out" / "results.json").read_text()) == records
    assert (tmp_path / "out" / "results.md").read_text() == table
    lines = table.strip().splitlines()
    assert lines[0] == ("| model | method | attack | eps | steps | restarts | n "
                        "| accuracy |")
    assert lines[3].startswith("| cnn | unknown | pgd | 8/255 | 2 | 1 | 24 | ")
    assert lines[2] == f"| cnn | unknown | none | - | - | - | 24 | " \
                       f"{100 * records[0]['accuracy']:.2f}% |"
    assert evaluation.format_eps(0.25) == "0.25"
    assert evaluation.format_eps(1 / 256) == "1/256"
    a_file = tmp_path / "file"
    a_file.write_text("")
    with pytest.raises(ValueError, match="is a file"):
        evaluation.write_results(records, a_file)
