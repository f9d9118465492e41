"""The 28x28 bench scripts run end to end at a tiny scale (one or two rounds, few
images) and write their raw-results JSON: every round, the ratios recomputable
from them, the command line. `step_28x28.py` (the README's headline), `fold_eval_28x28.py`
and `batch_scaling_28x28.py` run by default; the others trace the Fashion-MNIST backbone
many times (--runslow)."""

import pytest

from script_checks import assert_one_round_pair, assert_ratios_recompute, run, script
from speedlib import record

FMNIST_MODEL = record.REPO / "runs/fmnist_eps0.1/models/pat/seed0/classifier.keras"


def test_step_pairs():
    pairs = script("step_28x28").pairs_of(["ref", "pat", "at_alp", "pat_awp", "ref_kbn",
                                           "pat_kbn_nofold", "at_alp_xla"])
    assert ("pat", "ref") in pairs and ("at_alp", "pat") in pairs
    assert ("pat_awp", "pat") in pairs and ("pat_kbn_nofold", "ref_kbn") in pairs
    assert ("pat_kbn_nofold", "pat") in pairs  # before session 8 against now
    assert all(base != "ref_xla" for _, base in pairs)  # not timed: no pair


def test_step_script_writes_its_rounds_at_tiny_scale(tmp_path):
    """Tiny ResNet, one timed round of one step of the reference loop and `pat`
    with AWP."""
    data = run("step_28x28", tmp_path, "--rounds", "1", "--steps", "1",
               "--variants", "ref,pat_awp")
    assert_one_round_pair(data, "pat_awp", "ref")


@pytest.mark.slow
def test_batchnorm_units_script(tmp_path):
    data = run("batchnorm_units_28x28", tmp_path, "--rounds", "1", "--calls", "1")
    assert len(data["rounds"]["cpu_ms_per_call"]["fused/train pass B"]) == 1
    assert_ratios_recompute(data, "cpu_ms_per_call", "cpu")


def test_batch_scaling_script(tmp_path):
    data = run("batch_scaling_28x28", tmp_path, "--rounds", "1", "--batches", "2,4")
    assert [(r["name"], r["baseline"]) for r in data["ratios"]] == [
        ("train_4", "train_2"), ("grad_4", "grad_2"), ("wgrad_inf_4", "wgrad_inf_2")]
    assert_ratios_recompute(data, "cpu_seconds", "cpu")


@pytest.mark.slow
def test_attack_loop_script(tmp_path):
    data = run("attack_loop_28x28", tmp_path, "--rounds", "1", "--batch", "2")
    assert len(data["ratios"]) == 3
    assert_ratios_recompute(data, "wall_seconds", "wall")


@pytest.mark.slow
def test_profile_script(tmp_path):
    data = run("profile_28x28", tmp_path, "--rounds", "1",
               "--pieces", "fwd_B,train_B,train_2B")
    assert [(r["name"], r["baseline"]) for r in data["ratios"]] == [
        ("train_2B", "train_B"), ("train_B", "fwd_B")]
    assert_ratios_recompute(data, "cpu_seconds", "cpu")


@pytest.mark.slow
def test_validation_cost_script(tmp_path):
    data = run("validation_cost_28x28", tmp_path, "--rounds", "1", "--images", "8")
    assert set(data["shares"]) == {"pat", "at_alp"}
    share = data["shares"]["pat"]
    assert share["all_attacked_share"] == pytest.approx(
        share["all_attacked_cpu_seconds"] / share["epoch_cpu_seconds"])
    assert_ratios_recompute(data, "cpu_seconds", "cpu")


@pytest.mark.skipif(not FMNIST_MODEL.exists(), reason="needs the reproduction's pat model")
def test_fold_eval_script(tmp_path):
    data = run("fold_eval_28x28", tmp_path, "--model", str(FMNIST_MODEL), "--points", "8",
               "--rounds", "1", "--attacks", "pgd")
    assert set(data["robust_accuracy"]) == {"pgd/fold", "pgd/nofold"}
    assert_ratios_recompute(data, "wall_seconds", "wall")
