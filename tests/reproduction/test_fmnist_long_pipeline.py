"""The pipeline behind the long Fashion-MNIST numbers (issue 22 item 7):
experiments/fmnist_long.sh on the real Fashion-MNIST files, small.

It trains a shipped config (configs/fmnist_pat_awp.flags: the fmnist ResNet
with AWP, validation-split model selection) on 192 real training images for one
epoch, evaluates it under AutoAttack with a resume file on 16 real test images,
rechecks the images Square broke, writes the report, and runs again to check that everything finished is
skipped. The real runs are the same command without the FMNIST_LONG_*
variables. CI installs the data (.ci/run: apt-get install dataset-fashion-mnist)
and sets ATALP_REQUIRE_FASHION_MNIST=1, so a missing install fails there.
"""

import json
import os
import subprocess
import sys

import pytest

from atalp_keras.data.sources import fashion_mnist

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
INSTALLED = os.path.isdir(fashion_mnist.INSTALLED_DIR)

requires_fashion_mnist = pytest.mark.skipif(
    not INSTALLED and os.environ.get("ATALP_REQUIRE_FASHION_MNIST") != "1",
    reason="Fashion-MNIST not installed (apt-get install -y dataset-fashion-mnist)")


def _script(tmp_path, **overrides):
    env = dict(os.environ, PYTHON=sys.executable, KERAS_BACKEND="tensorflow",
               TF_CPP_MIN_LOG_LEVEL="2",
               FMNIST_LONG_ROOT=str(tmp_path / "runs"),
               FMNIST_LONG_REPORT=str(tmp_path / "report.md"),
               FMNIST_LONG_TRAIN_ARGS=("--max_train_examples=192 --max_test_examples=32 "
                                       "--epochs=1 --batch_size=32 --num_steps=1 "
                                       "--eval_pgd_steps=1 --eval_adv_examples=8 "
                                       "--validation_split=0.25 --noexport"),
               FMNIST_LONG_EVAL_ARGS="--num_examples=16 --num_steps=2 --queries=10",
               FMNIST_LONG_RECHECK_ARGS=("--num_examples=16 --num_steps=2 --restarts=1 --seed=1 "
                                         "--n_target_classes=2"))
    env.update(overrides)
    return subprocess.run(["bash", os.path.join(REPO, "experiments", "fmnist_long.sh"),
                           "pat_awp"], env=env, capture_output=True, text=True,
                          timeout=900)


@requires_fashion_mnist
def test_the_long_run_script_trains_evaluates_reports_and_resumes(tmp_path):
    result = _script(tmp_path)
    logs = "".join(p.read_text()[-3000:] for p in (tmp_path / "runs").rglob("*.log"))
    assert result.returncode == 0, result.stdout + result.stderr + logs
    assert "recheck failed" not in result.stdout, logs  # the queue goes on past one
    run = tmp_path / "runs" / "pat_awp"
    metrics = json.loads((run / "metrics.json").read_text())
    # What the config says it trains, with the test's overrides on top.
    assert metrics["config"]["dataset"] == "fashion_mnist"
    assert metrics["config"]["model"] == "fmnist" and metrics["config"]["awp_gamma"] == 0.01
    assert metrics["config"]["keep"] == "best"
    assert metrics["dataset"]["num_train"] == 144  # 192 less the 25% held out
    assert metrics["training"]["selection"]["monitor"] == "val_adv_accuracy"

    records = json.loads((run / "eval_autoattack_eps0.1" / "results.json").read_text())
    attack = next(r for r in records if r["attack"] == "autoattack")
    assert (attack["n"], attack["eps"], len(attack["correct"])) == (16, 0.1, 16)
    assert [s["component"] for s in attack["stages"]] == [
        "clean", "apgd-ce", "apgd-t", "fab-t", "square"]
    assert attack["max_perturbation"] <= 0.1 + 1e-6
    assert (run / "eval_autoattack_eps0.1" / "autoattack.npz").is_file()
    # Square's images, rechecked: as many as Square broke (the stages' counts).
    recheck = json.loads((run / "eval_autoattack_eps0.1" / "square_recheck.json").read_text())
    stages = {s["component"]: s["robust_accuracy"] for s in attack["stages"]}
    assert recheck["square"]["n"] == round(16 * (stages["fab-t"] - stages["square"]))
    assert recheck["num_examples"] == 16 and recheck["eps"] == 0.1
    # --seed=1 draws the control and the attacks' starts, not other images than
    # the AutoAttack run's (its evaluate.py --seed, 0: --eval_seed).
    assert "--seed=1" in recheck["command"]

    report = (tmp_path / "report.md").read_text()
    assert "| `pat_awp`:" in report and "| evaluated |" in report
    accuracy = sum(c == "1" for c in attack["correct"]) / 16
    assert f"| {100 * accuracy:.2f} [" in report
    assert (tmp_path / "report" / "validation.png").is_file()

    # Again: nothing is trained or attacked twice.
    again = _script(tmp_path)
    assert again.returncode == 0, again.stderr
    assert "pat_awp: finished, skipped" in again.stdout
    assert "pat_awp: AutoAttack evaluated, skipped" in again.stdout
    # The recheck made from this evaluation's Square images is kept.
    log = (run / "eval_autoattack_eps0.1.log").read_text()
    assert log.count("square_recheck.json was made from the images Square broke") == 1
    assert "recheck failed" not in again.stdout

    # A recheck that fails (here: a flag out of range) is said, and the queue
    # and its report go on.
    (tmp_path / "report.md").unlink()
    failing = _script(tmp_path, FMNIST_LONG_RECHECK_ARGS="--num_steps=0")
    assert failing.returncode == 0, failing.stderr
    assert "pat_awp: the recheck failed (see " in failing.stdout
    assert (tmp_path / "report.md").is_file()

