"""Attack suites: parsing ``--attacks`` and building attacks from the registry."""

import pytest

from atalp_keras import attacks, evaluation
from atalp_keras.errors import UsageError


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

        def __init__(self, eps, n_queries=100, seed=None):
            super().__init__(eps, num_steps=1, seed=seed)
            self.n_queries = n_queries

        def get_config(self):
            return {**super().get_config(), "n_queries": self.n_queries}

    monkeypatch.setitem(attacks.ATTACKS, "query-test", QueryAttack)
    (attack,) = evaluation.build_attacks(
        evaluation.parse_attack_list("query-test"), [0.1], num_steps=20,
        restarts=4, queries=500)
    assert attack.n_queries == 500  # --queries reaches its n_queries (the one name).


def test_suite_errors_are_usage_errors():
    for bad in ("fgsm,bogus", "pgd:50", " , "):
        with pytest.raises(UsageError):
            evaluation.parse_attack_list(bad)
    with pytest.raises(UsageError):
        evaluation.build_attacks([("pgd", {})], [8])


def test_autoattack_gets_the_suite_query_budget_as_n_queries():
    (auto, rays, square) = evaluation.build_attacks(
        evaluation.parse_attack_list("autoattack,rays,square"), [0.1], queries=77)
    assert auto.n_queries == rays.n_queries == square.n_queries == 77
