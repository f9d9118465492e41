"""Presets: the fmnist recipe trains exactly what configs/fmnist_<method>.flags
train, the plan follows issue 12, and explicit flags win."""

import dataclasses
import json
import os

import numpy as np
import pytest

from atalp_keras.errors import UsageError
from atalp_keras.reproduction import long_runs, models, presets
from atalp_keras.training.config import BEFORE_RECORDED, NON_WEIGHT_SETTINGS

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _flagfile_config(name, model_dir):
    """The `TrainConfig` train.py builds from ``configs/<name>.flags``."""
    from absl import flags

    from atalp_keras.cli import flagfiles
    from atalp_keras.cli import train as train_cli

    flag_values = flags.FlagValues()
    train_cli.define_flags(flag_values)
    flag_values(flagfiles.expand_argv(
        ["train.py", f"--flagfile=configs/{name}.flags", f"--model_dir={model_dir}"]))
    return train_cli.config_from_flags(flag_values)


# What may differ between a reproduction model and train.py's: settings that do
# not change the weights, and the per-epoch validation the reproduction skips.
_IGNORED = NON_WEIGHT_SETTINGS + ("eval_pgd_steps",)


@pytest.mark.parametrize("method", ["standard", "pat", "alp", "at", "at_alp", "trades",
                                    "fast"])
def test_fmnist_preset_trains_what_the_flagfiles_train(method, monkeypatch):
    monkeypatch.chdir(REPO)
    s = presets.resolve("fmnist")
    model_dir = models.main_dir(s, method, 0, 0.1)
    assert model_dir == f"runs/fmnist_eps0.1/models/{method}/seed0"
    # The reproduction trains at/at_alp with the weights its sweep chose (sweep.json).
    with open(os.path.join(REPO, "runs/fmnist_eps0.1/sweep.json")) as f:
        chosen = json.load(f)["chosen"]
    ours = dataclasses.asdict(models.train_config(s, method, 0, model_dir, 0.1,
                                                  **models.method_weights(method, chosen)))
    theirs = dataclasses.asdict(_flagfile_config(f"fmnist_{method}", model_dir))
    differ = {k: (ours[k], theirs[k]) for k in ours if k not in _IGNORED and ours[k] != theirs[k]}
    assert not differ
    # ... and what the committed, reported model was trained with.
    with open(os.path.join(REPO, model_dir, "metrics.json")) as f:
        trained = json.load(f)["config"]
    validated = json.loads(json.dumps(dataclasses.asdict(
        _flagfile_config(f"fmnist_{method}", model_dir).validate()), default=str))
    differ = {k: (trained.get(k, BEFORE_RECORDED.get(k)), validated[k])
              for k in models.COMPARED_CONFIG
              if trained.get(k, BEFORE_RECORDED.get(k)) != validated[k]}
    assert not differ


def test_fmnist_eps_03_scales_the_step_with_the_radius():
    s = presets.resolve("fmnist")
    config = models.train_config(s, "alp", 0, models.main_dir(s, "alp", 0, 0.3), 0.3)
    assert config.model_dir == "runs/fmnist_eps0.3/models/alp/seed0"
    assert config.eps == pytest.approx(0.3) and config.step_size == pytest.approx(0.075)


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


def test_sources_gray_from_the_other_seed_and_one_shared_black(monkeypatch, tmp_path):
    s = presets.resolve("fmnist", explicit={"out": str(tmp_path / "eps{eps}")})
    trained = []

    def fake_train(config, label, ledger=None):  # records what would be trained
        trained.append((config.method, config.seed, config.model, config.model_dir))
        return {"config": {}}, False

    monkeypatch.setattr(models, "train_model", fake_train)
    entries, sources, _ = models.train_method(s, "alp", (0, 1), 0.1, None, {})
    alp0, alp1 = (models.main_dir(s, "alp", seed, 0.1) for seed in (0, 1))
    black = os.path.join(os.path.dirname(models.main_dir(s, "pat", 0, 0.1)),
                         "black_fmnist_deep_seed100")
    assert trained == [("alp", 0, "fmnist", alp0), ("alp", 1, "fmnist", alp1),
                       ("pat", 100, "fmnist_deep", black)]
    assert sources["alp_seed0"] == {"gray": ("alp_seed1", alp1),
                                    "black": ("pat_black_fmnist_deep", black)}
    assert sources["alp_seed1"]["gray"] == ("alp_seed0", alp0)
    # Without the two options: a gray source of seed 100 and a black one per method.
    s = presets.resolve("fmnist", explicit={"out": str(tmp_path / "eps{eps}"),
                                            "gray_from_seeds": False, "blackbox_method": ""})
    trained.clear()
    models.train_method(s, "alp", (0,), 0.1, None, {})
    assert [t[:3] for t in trained] == [("alp", 0, "fmnist"), ("alp", 100, "fmnist"),
                                       ("alp", 100, "fmnist_deep")]


@pytest.mark.parametrize("transfer", [True, False])
def test_notransfer_trains_no_sources_and_train_only_evaluates_nothing(transfer, monkeypatch):
    from atalp_keras.reproduction import evaluate, pipeline

    s = presets.resolve("fmnist", explicit={"transfer": transfer, "train_only": True})
    asked = []

    def fake_train_method(s, method, seeds, eps, chosen, ledger, sources=True):
        asked.append((method, tuple(seeds), sources))
        entries = [{"name": f"{method}_seed{seed}", "method": method, "seed": seed,
                    "dir": "d", "eps": eps} for seed in seeds]
        metric = {"training": {"loss_weights": {}}, "test": {"accuracy": 0.5, "n": 10}}
        return entries, {e["name"]: {} for e in entries}, {"main": [metric] * len(seeds)}

    monkeypatch.setattr(models, "train_method", fake_train_method)
    monkeypatch.setattr(evaluate, "evaluate_main", lambda *a, **k: pytest.fail("evaluated"))
    test = (np.zeros((2, 28, 28, 1), np.float32), np.zeros(2, np.int32))
    run = pipeline.train_and_evaluate(s, None, test, None, 0.1, ["standard", "alp"],
                                      True, None, {})
    assert asked == [("standard", (0,), False), ("alp", (0, 1), transfer)]
    assert [e["name"] for e in run["entries"]] == ["standard_seed0", "alp_seed0", "alp_seed1"]


def test_the_sweep_runs_only_for_a_plan_with_at_or_at_alp():
    from atalp_keras.reproduction import pipeline

    assert pipeline.needs_sweep(presets.resolve("fmnist"))
    # --also_eps= drops the eps-0.3 run, whose methods (with at_alp) stay listed.
    only_pat = presets.resolve("fmnist", explicit={"methods": ("pat",), "also_eps": ()})
    assert only_pat.also_eps_methods and not pipeline.needs_sweep(only_pat)
    assert pipeline.needs_sweep(presets.resolve("fmnist", explicit={"methods": ("pat",)}))
    assert not pipeline.needs_sweep(presets.resolve("fmnist", explicit={"sweep": False}))
    # A shared black-box source trained with at_alp needs the swept weights too.
    black_at_alp = presets.resolve("fmnist", explicit={"methods": ("pat",), "also_eps": (),
                                                       "blackbox_method": "at_alp"})
    assert pipeline.needs_sweep(black_at_alp)
    assert not pipeline.needs_sweep(dataclasses.replace(black_at_alp, transfer=False))


def test_a_run_smaller_than_its_preset_is_labelled_partial():
    from atalp_keras.reproduction import report

    assert report.missing_from_plan(presets.resolve("fmnist")) == []
    assert report.partial_note(presets.resolve("digits", quick=True)) == ""
    s = presets.resolve("fmnist", explicit={"methods": ("pat", "alp"), "more_seeds_methods": (),
                                            "also_eps": (), "transfer": False})
    assert report.missing_from_plan(s) == [
        "the methods `standard`, `at`, `at_alp`, `trades`, `fast`", "seeds 1",
        "the training radii eps 0.3", "the gray/black-box transfer attacks"]
    note = report.partial_note(s)
    assert note.startswith("> **Partial report.**")
    assert "`python experiments/reproduce.py --preset=fmnist`" in note


def test_smaller_budgets_are_partial_larger_ones_are_not():
    from atalp_keras.reproduction import report

    s = presets.resolve("fmnist", explicit={"num_test": 200, "pgd_restarts": 1,
                                            "autoattack": "fast", "rays_queries": 5000},
                        explicit_recipe={"epochs": 2})
    assert report.missing_from_plan(s) == [
        "smaller budgets: epochs 2 (plan: 5), num_test 200 (plan: 1000), pgd_restarts 1 "
        "(plan: 5), AutoAttack fast (plan: standard)"]
    # 0 is "all" for num_test: more than the plan's 1,000.
    assert report.missing_from_plan(presets.resolve("fmnist", explicit={"num_test": 0})) == []
    assert report.missing_from_plan(presets.resolve("digits", explicit={"num_test": 100})) == [
        "smaller budgets: num_test 100 (plan: all)"]
    # sweep_epochs 0 is the recipe's epochs: 2 < the plan's 3.
    s = presets.resolve("fmnist", explicit={"sweep_epochs": 0}, explicit_recipe={"epochs": 2})
    assert "sweep_epochs 2 (plan: 3)" in report.missing_from_plan(s)[0]
    assert report.missing_from_plan(presets.resolve("fmnist", explicit={"sweep_epochs": 0})) == []
    s = presets.resolve("fmnist", explicit={"at_weights": (0.3, 1.0)})
    assert report.missing_from_plan(s) == ["smaller budgets: at_weights without 0.01, 0.03, 0.1"]
    s = presets.resolve("fmnist", explicit={"sweep": False})
    assert report.missing_from_plan(s) == ["smaller budgets: no AT/ALP weight sweep (plan: a sweep)"]


def test_fewer_methods_at_a_radius_or_with_sources_is_partial_too():
    from atalp_keras.reproduction import report

    s = presets.resolve("fmnist", explicit={"also_eps_methods": ("pat",)})
    assert report.missing_from_plan(s) == ["`alp`, `at_alp` at eps 0.3"]
    s = presets.resolve("fmnist", explicit={"source_methods": ("pat", "alp")})
    assert report.missing_from_plan(s) == ["the gray/black-box transfer attacks on `at_alp`"]
    # More than the plan (sources for every method) is not partial.
    assert report.missing_from_plan(presets.resolve("fmnist",
                                                    explicit={"source_methods": ()})) == []


def test_the_sources_row_says_which_methods_take_their_gray_source_from_a_seed():
    from atalp_keras.reproduction import report

    cell = report._sources_cell(presets.resolve("fmnist"))
    assert "another main seed's model for `pat`, `alp`, `at_alp`" in cell
    assert "seed 100 for" not in cell
    # --quick keeps one seed: every gray source is a trained seed-100 model,
    # as train_method trains it, and the row must not claim otherwise.
    s = presets.resolve("fmnist", quick=True)
    assert not any(s.gray_from_main(m) for m in s.methods)
    cell = report._sources_cell(s)
    assert "another main seed" not in cell and "seed 100 for `pat`, `alp`, `at_alp`" in cell


def test_a_shared_source_is_counted_once_in_the_ledger(tmp_path):
    # train_method asks for the one --blackbox_method source once per method;
    # the report's compute line must count that model (and its seconds) once.
    from atalp_keras import artifacts

    s = presets.resolve("fmnist", explicit={"out": str(tmp_path / "eps{eps}")})
    config = models.train_config(s, "pat", 100, str(tmp_path / "black"), 0.1,
                                 model="fmnist_deep")
    folder = artifacts.RunFolder(config.model_dir)
    os.makedirs(config.model_dir)
    stored = json.loads(json.dumps(dataclasses.asdict(config.validate()), default=str))
    with open(folder.metrics, "w") as handle:
        json.dump({"config": stored, "seconds": 60.0}, handle)
    open(folder.classifier, "w").close()
    ledger = {}
    for _ in range(3):
        _, reused = models.train_model(config, "pat black source", ledger)
        assert reused
    assert (ledger["reused"], ledger["train_seconds"]) == (1, 60.0)


def test_the_black_box_caption_names_the_shared_source_method():
    from atalp_keras.reproduction import report

    figure = {"iterations_black": "docs/results_fmnist/iterations_black.png"}
    shared = report.figures_section(presets.resolve("fmnist"), figure)
    assert "one `pat` model for every method" in shared and "same method" not in shared
    own = report.figures_section(presets.resolve("digits"),
                                 {"iterations_black": "docs/results/iterations_black.png"})
    assert "another architecture, same method" in own


def test_results_tables_show_transfer_columns_only_where_measured():
    from atalp_keras.reproduction import report
    from atalp_keras.reproduction.stats import Stat

    s = presets.resolve("fmnist", explicit={"transfer": False})
    white = {"pat": {("clean", 0.1): Stat([0.8], 100), ("pgd", 0.1): Stat([0.7], 100)}}
    header = report.results_tables(s, white, ["pat"], (0.1,), 100, 200).splitlines()[2]
    assert header == "| method | clean | pgd |"
    white["pat"][("gray@200", 0.1)] = Stat([0.75], 100)
    header = report.results_tables(s, white, ["pat"], (0.1,), 100, 200).splitlines()[2]
    assert header == "| method | clean | pgd | gray PGD-200 |"


def test_the_longer_study_trains_the_first_seed_longer_and_evaluates_it(monkeypatch, tmp_path):
    from atalp_keras.reproduction import evaluate, pipeline

    s = presets.resolve("fmnist", explicit={"out": str(tmp_path / "eps{eps}")})
    assert (s.longer_epochs, s.longer_methods) == (15, ("pat",))
    trained, evaluated = [], []

    def fake_train(config, label, ledger=None):
        trained.append((config.method, config.seed, config.epochs, config.eps,
                        config.model_dir))
        return {"seconds": 90.0, "history": [{"val_accuracy": 0.8}, {"val_accuracy": 0.85}]}, False

    def fake_evaluate(s, entry, x, y, sources, info, ledger=None, full_test=None):
        evaluated.append((entry["name"], entry["eval_eps"], entry["curve_eps"], sources))
        return {"parts": {"clean": {"value": {"accuracy": 0.5, "correct": [1, 0]}},
                          "audit": {"value": [{"check": "restarts", "status": "WARN",
                                               "detail": "x5 finds more"}]}}}

    monkeypatch.setattr(models, "train_model", fake_train)
    monkeypatch.setattr(evaluate, "evaluate_main", fake_evaluate)
    test = (np.zeros((2, 28, 28, 1), np.float32), np.zeros(2, np.int32))
    rows = pipeline.longer_study(s, None, test, None, None, {})
    folder = str(tmp_path / "eps0.1" / "models" / "pat" / "epochs15_seed0")
    assert trained == [("pat", 0, 15, 0.1, folder)]
    assert evaluated == [("pat_epochs15_seed0", (0.1,), (), {})]
    assert rows[0]["test_curve"] == [0.8, 0.85] and rows[0]["n_all"] == 2
    assert rows[0]["values"][("clean", 0.1)] == 0.5
    # Its audit is listed after the main models'.
    from atalp_keras.reproduction import discussion

    run = {"eps": 0.1, "audits": {"pat_seed0": [{"check": "logits", "status": "PASS",
                                                 "detail": ""}]}, "longer": rows}
    assert discussion.audit_section([run]).splitlines()[2:4] == [
        "- eps 0.1, `pat_seed0`: every check PASS or SKIP",
        "- eps 0.1, `pat_epochs15_seed0`: WARN restarts: x5 finds more"]
    # --train_only trains it and evaluates nothing; --quick has no such model.
    evaluated.clear()
    assert pipeline.longer_study(dataclasses.replace(s, train_only=True), None, test, None,
                                 None, {}) == []
    assert not evaluated and presets.resolve("fmnist", quick=True).longer_epochs == 0


def test_longer_epochs_must_exceed_the_recipe_and_its_absence_is_partial():
    from atalp_keras.reproduction import report

    with pytest.raises(UsageError, match="longer_epochs=5"):
        presets.resolve("fmnist", explicit={"longer_epochs": 5})
    with pytest.raises(UsageError, match="longer_methods"):
        presets.resolve("fmnist", explicit={"longer_methods": ()})
    assert report.missing_from_plan(presets.resolve("fmnist", explicit={"longer_epochs": 0})) \
        == ["the 15-epoch model of `pat`"]


def test_the_longer_section_against_a_hand_computed_case():
    from atalp_keras.reproduction import report

    s = presets.resolve("fmnist")
    eps = 0.1
    short = {("clean_all", eps): 0.856, ("clean", eps): 0.870, ("pgd", eps): 0.769,
             ("autoattack", eps): 0.763, ("worst-case", eps): 0.763}
    long = {("clean_all", eps): 0.874, ("clean", eps): 0.885, ("pgd", eps): 0.780,
            ("autoattack", eps): 0.770, ("worst-case", eps): 0.769}
    main = {"eps": eps, "n": 1000, "entries": [{"name": "pat_seed0", "train_seconds": 600.0}],
            "per_model": {"pat_seed0": short}}
    longer = [{"method": "pat", "seed": 0, "epochs": 15, "n_all": 10000, "values": long,
               "train_seconds": 1800.0, "test_curve": [0.801, 0.874]}]
    text = report.longer_section(s, main, longer)
    assert "| `pat` | 0 | 5 | 10 | 85.6 | 87.0 | 76.9 | 76.3 | 76.3 |" in text
    assert "| `pat` | 0 | 15 | 30 | 87.4 | 88.5 | 78.0 | 77.0 | 76.9 |" in text
    # Clean on 10,000: SEs 0.351 and 0.332 points, combined 0.48 < 1.8: beyond.
    assert ("clean accuracy on all test images 85.6% after 5 epochs, 87.4% after 15 "
            "(+1.8 points, beyond the test-sample noise at n=10000)") in text
    # AutoAttack on 1,000: SEs 1.34 and 1.33 points, combined 1.89 > 0.7: within.
    assert "AutoAttack 76.3% after 5 epochs, 77.0% after 15 (+0.7 points, within" in text
    assert "published clean 88.5%: 1.1 points short after 15 epochs" in text
    assert text.rstrip().endswith("clean test accuracy after each epoch: 80.1, 87.4.")
    assert "last three epochs" not in text  # two epochs of curve: nothing to say
    # A level end of the curve (87.3 -> 87.4 over the last three epochs) says so.
    longer[0]["test_curve"] = [0.801, 0.873, 0.870, 0.874]
    assert ("over its last three epochs the clean test accuracy moved +0.1 points (level: "
            "the schedule had run its course)") in report.longer_section(s, main, longer)
    # A curve still rising by 2 points does not.
    longer[0]["test_curve"] = [0.801, 0.854, 0.860, 0.874]
    rising = report.longer_section(s, main, longer)
    assert "moved +2.0 points; clean test accuracy" in rising and "(level)" not in rising
    assert report.longer_section(s, main, []) == ""


def test_training_seconds_count_every_session_of_a_resumed_run():
    # Epochs 1-2 ran in a killed session, epoch 3 in the one that finished:
    # metrics.json's `seconds` (100) and fit_seconds (90) cover the last only.
    metrics = {"seconds": 100.0, "training": {"fit_seconds": 90.0},
               "history": [{"epoch": 1, "seconds": 95.0}, {"epoch": 2, "seconds": 85.0},
                           {"epoch": 3, "seconds": 90.0}]}
    assert models.training_seconds(metrics) == 95.0 + 85.0 + 90.0 + 10.0
    assert models.training_seconds({"seconds": 12.0}) == 12.0


# The runs of experiments/fmnist_long.sh (test_long_runs.py keeps the two equal).
LONG_RUNS = long_runs.RUNS


@pytest.mark.parametrize("name", LONG_RUNS)
def test_long_configs_train_what_their_committed_runs_were_trained_with(name, monkeypatch):
    """configs/fmnist_<name>.flags (issue 22's long schedule) against the
    run folder experiments/fmnist_long.sh made and committed: every setting
    that changes the weights must agree. A run not yet started (nothing
    committed) is checked once it is."""
    monkeypatch.chdir(REPO)
    model_dir = f"runs/fmnist_long/{name}"
    flagged = json.loads(json.dumps(dataclasses.asdict(
        _flagfile_config(f"fmnist_{name}", model_dir).validate()), default=str))
    assert flagged["model_dir"] == model_dir
    # experiments/fmnist_long.sh evaluates the run at the eps of its name.
    assert flagged["eps"] == long_runs.run_eps(name)
    recorded = os.path.join(REPO, model_dir, "run_config.json")
    if not os.path.exists(recorded):
        pytest.skip(f"{model_dir} not trained yet (bash experiments/fmnist_long.sh {name})")
    with open(recorded) as f:
        trained = json.load(f)["config"]
    # A setting newer than the run's record: what the run was trained with.
    recorded = {k: trained.get(k, BEFORE_RECORDED.get(k)) for k in flagged}
    differ = {k: (recorded[k], flagged[k]) for k in flagged
              if k not in NON_WEIGHT_SETTINGS and recorded[k] != flagged[k]}
    assert not differ
