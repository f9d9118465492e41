"""Settings resolution, the row plan and the merge of repeated runs."""

import dataclasses

import pytest

from atalp_keras.errors import UsageError
from speedlib import config, plan, report


def resolved(**changes):
    return config.validate(config.resolve(dataclasses.replace(config.BenchSettings(), **changes)))


def test_28x28_workloads_resolve_to_random_28x28_images_batch_128():
    for model in ("fmnist", "tiny_resnet28"):
        cfg = resolved(model=model)
        assert cfg["input_shape"] == [28, 28, 1] and cfg["data"] == "random"
        assert cfg["batch_size"] == 128 and cfg["prepare_epochs"] == 0
    assert resolved(model="small_cnn")["data"] == "digits"
    assert resolved(model="fmnist", data="fashion_mnist")["prepare_epochs"] == 30


def test_bad_settings_are_usage_errors():
    with pytest.raises(UsageError, match="--data=fashion_mnist"):
        resolved(model="small_cnn", data="fashion_mnist")
    with pytest.raises(UsageError, match="--presets"):
        resolved(presets="pat,pgd")


def test_epochs_row_holds_every_preset_and_the_reference(tmp_path):
    cfg = resolved(model="fmnist", sections="costmodel,epochs", levers=False, art=False)
    rows = plan.plan_rows(cfg, tmp_path)
    assert [r["id"] for r in rows] == ["costmodel", "epochs"]
    assert rows[1]["variants"] == list(config.PRESETS) + ["reference"]


def test_evalcost_rows_compare_with_art_where_art_has_the_attack(tmp_path):
    cfg = resolved(sections="evalcost")
    ids = [r["id"] for r in plan.plan_rows(cfg, tmp_path)]
    assert ids == ["prepare", "eval/ours/autoattack", "eval/art/autoattack", "eval/ours/pgd",
                   "eval/art/pgd", "eval/ours/rays"]
    cfg = resolved(sections="evalcost", eval_model="m.keras", art=False)
    rows = plan.plan_rows(cfg, tmp_path)
    assert [r["id"] for r in rows] == ["eval/ours/autoattack", "eval/ours/pgd", "eval/ours/rays"]
    assert all(r["model_path"] == "m.keras" and r["points"] == 1000 for r in rows)


def test_schedule_repeats_timed_rows_in_turn():
    rows = [{"id": "a", "kind": "preset"}, {"id": "p", "kind": "prepare"},
            {"id": "b", "kind": "reference"}]
    assert [r["id"] for r in plan.schedule(rows, 2)] == ["a", "b", "a", "b", "p"]


def test_merge_runs_takes_medians_and_the_peak_maximum():
    runs = [{"images_per_second": 1.0, "peak_rss_mb": 5.0, "ms": {"pat": 3.0}},
            {"images_per_second": 3.0, "peak_rss_mb": 9.0, "ms": {"pat": 1.0}},
            {"images_per_second": 2.0, "peak_rss_mb": 7.0, "ms": {"pat": 2.0}},
            {"error": "timed out"}]
    merged = plan.merge_runs(runs)
    assert merged["images_per_second"] == 2.0 and merged["peak_rss_mb"] == 9.0
    assert merged["ms"] == {"pat": 2.0} and merged["repeats"] == 3


def test_targets_use_issue_11_thresholds():
    results = {"epochs": {"images_per_second": {"pat": 95.0, "reference": 100.0,
                                                "at_alp": 85.0}}}
    targets = {t["target"]: t for t in report.check_targets(results, [])}
    pat = targets["pat / reference loop, interleaved epochs"]
    assert pat["value"] == pytest.approx(0.95) and pat["holds"] is False
    at_alp = targets["at_alp / pat time, interleaved epochs"]
    assert at_alp["value"] == pytest.approx(95 / 85) and at_alp["holds"] is True


def test_step_targets_compare_milliseconds_the_right_way_round():
    results = {"steps": {"ms_per_step": {"pat": 10.0, "reference": 9.0, "at_alp": 12.0}}}
    targets = {t["target"]: t for t in report.check_targets(results, [])}
    assert targets["pat / reference loop, compiled step alone"]["value"] == pytest.approx(0.9)
    assert targets["at_alp / pat time, compiled step alone"]["value"] == pytest.approx(1.2)


def test_an_eval_model_of_a_package_backbone_loads(tmp_path):
    # --eval_model is a run's classifier.keras: its backbone layers (the
    # pixel normalization) must be registered before loading, which a fresh
    # row process had not done. Hence a fresh interpreter here.
    import os
    import subprocess
    import sys

    import atalp_keras as ak

    path = str(tmp_path / "classifier.keras")
    ak.build_backbone("fmnist", (28, 28, 1), 10).save(path)
    bench = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))), "bench")
    code = (f"import sys; sys.path.insert(0, {bench!r}); "
            "from speedlib import rows_attack; "
            f"m = rows_attack._attacked_model({{}}, {{'model_path': {path!r}}}); "
            "print(m.output_shape)")
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("(None, 10)")


def test_every_attack_row_builds_our_attack():
    # The evalcost rows' RayS still passed the pre-redesign `query_budget`.
    from speedlib import rows_attack

    cfg = resolved(sections="attacks,evalcost")
    for name in list(cfg["attacks"]) + list(cfg["eval_attacks"]):
        attack = rows_attack.our_attack(cfg, name)
        assert attack.eps == cfg["eps"], name
    assert rows_attack.our_attack(cfg, "rays").n_queries == cfg["rays_queries"]
