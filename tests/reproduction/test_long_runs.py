"""The long Fashion-MNIST runs' report (experiments/fmnist_long_report.py):
every cell from the run folders' files, checked on hand-made runs."""

import csv
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from atalp_keras.reproduction import long_runs
from figure_checks import lines, saved_figures  # noqa: F401

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# experiments/square_recheck.py's default attacks, as it labels them.
DEFAULT_RECHECK = ["apgd-ce 5x500", "apgd-dlr 5x500", "apgd-t 9 targets x500"]


def _write_run(root, name, history, kept=None, clean=None, robust=None, eps=0.1):
    """A run folder as train.py and evaluate.py leave it: history.csv, and
    with ``kept`` metrics.json; with ``clean``/``robust`` (per-image strings)
    the AutoAttack evaluation at ``eps``."""
    run = root / name
    run.mkdir(parents=True)
    with open(run / "history.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["epoch", "val_accuracy", "val_adv_accuracy", "seconds"])
        for epoch, (val, val_adv) in enumerate(history, 1):
            writer.writerow([epoch, val, val_adv, 60.0])
    if kept is None:
        return
    (run / "metrics.json").write_text(json.dumps({
        "model": {"name": "fmnist_resnet", "params": 78578},
        "training": {"epochs_completed": len(history),
                     "selection": {"epoch": kept, "value": history[kept - 1][1]}}}))
    if clean is None:
        return
    out = run / f"eval_autoattack_eps{eps:g}"
    out.mkdir()
    # Resumed once, as a record written before evaluate.py counted the
    # earlier call: "seconds" holds the last call's (Square), the stages all.
    records = [{"attack": "none", "eps": 0.0, "n": len(clean), "accuracy": 0.0,
                "correct": clean},
               {"attack": "autoattack", "eps": eps, "n": len(robust), "accuracy": 0.0,
                "correct": robust, "seconds": 1800.0,
                "stages": [{"component": "clean", "robust_accuracy": 1.0, "seconds": 0.5},
                           {"component": "apgd-ce", "robust_accuracy": 0.75, "seconds": 3600},
                           {"component": "square", "robust_accuracy": 0.5, "seconds": 1800}]}]
    (out / "results.json").write_text(json.dumps(records))


def test_report_cells_tests_and_figure_come_from_the_files(tmp_path, saved_figures):
    root = tmp_path / "runs"
    # pat_awp: clean 3/4, robust 2/4 (images 0, 1); pat_long: robust images
    # 1, 2, 3 (3/4). McNemar: pat_awp alone keeps image 0, pat_long alone
    # keeps 2 and 3: b=1, c=2, p = 2 * P(Bin(3, 1/2) <= 1) = 2 * 4/8 = 1.
    # Its first epoch's clean validation accuracy is nan: no maximum reads it.
    _write_run(root, "pat_awp", [(float("nan"), 0.25), (0.75, 0.5), (0.7, 0.4)], kept=2,
               clean="1110", robust="1100")
    _write_run(root, "pat_long", [(0.6, 0.3)], kept=1, clean="1111", robust="0111")
    _write_run(root, "at_alp_awp", [(0.4, 0.2), (0.5, 0.3)])  # still training
    # experiments/square_recheck.py ran on pat_long (the counts it writes),
    # and on pat_awp while its Square had attacked 2 of the 3 images.
    recheck = {"square": {"n": 1, "any": 1, "images": [0]}, "control": {"n": 1, "any": 0},
               "square_attacked": 3, "attacks": DEFAULT_RECHECK}
    recheck_path = root / "pat_long" / "eval_autoattack_eps0.1" / "square_recheck.json"
    recheck_path.write_text(json.dumps(recheck))
    (root / "pat_awp" / "eval_autoattack_eps0.1" / "square_recheck.json").write_text(
        json.dumps(dict(recheck, square_attacked=2)))
    out = tmp_path / "docs" / "long.md"
    long_runs.write_report(str(root), str(out), os.path.join(REPO, "configs"))
    text = out.read_text()

    row = {m.group(1): m.group(0) for m in re.finditer(r"^\| `(\w+)`:.*$", text, re.M)}
    assert "| fmnist_resnet (78,578) | evaluated | 2 of 3 (50.0%) |" in row["pat_awp"]
    # 3/4 = 75%: Wilson 95% [30.1, 95.4]; 2/4: [15.0, 85.0]; 3 epochs of 60 s;
    # AutoAttack 0.5 + 3600 + 1800 s = 1.5 h.
    assert ("| 75.00 [30.1, 95.4] | 50.00 [15.0, 85.0] | apgd-ce 75.00 → square 50.00 | 3 min "
            "| 1.5 h |") in row["pat_awp"]
    assert "| 100.00 [51.0, 100.0] | 75.00 [30.1, 95.4] |" in row["pat_long"]
    assert "| training, 2 epochs done | - | - | - |" in row["at_alp_awp"]
    assert "| not started |" in row["mart_awp"]
    # Each row says what its shipped config trains.
    assert "gamma 0.01" in row["pat_awp"] and "MART" in row["mart_awp"]

    # Validation picks pat_awp (PGD-10 50% at its kept epoch 2, pat_long 30%):
    # 3/4 clean is 13.5 short of 88.5, 2/4 robust 30 short of 80. Its gaps
    # (validation 75/50 at the kept epoch, test 75/50) are 0, so the goal
    # would take 88.5/80 on validation. pat_long (75%) is the most robust on
    # the test set, which the text names without choosing it.
    assert ("The recipe validation picks (the highest validation PGD-10 at the kept epoch, "
            "50.0%), `pat_awp`: clean 75.00% (13.50 points short of 88.5%); AutoAttack 50.00% "
            "(30.00 points short of 80.0%). Its validation clean accuracy peaked at 75.0% "
            "(epoch 2 of 3), its validation PGD-10 accuracy at 50.0% (epoch 2); at the kept "
            "epoch 2 the held-out training images scored 75.0% clean, the test images "
            "75.00%. If `pat_awp`'s gaps between validation at its kept epoch and test "
            "(+0.00 points clean, +0.00 from validation PGD-10 to test AutoAttack) held for "
            "another run, the goal would take a kept epoch at about 88.5% clean and 80.0% "
            "PGD-10 on validation; the highest read so far, by any run at this eps and epoch: "
            "75.0% clean (`pat_awp`, epoch 2) and 50.0% PGD-10 (`pat_awp`, epoch 2). "
            "`pat_long` scores the most under AutoAttack on the test set (clean 100.00% "
            "(reached 88.5%); AutoAttack 75.00% (5.00 points short of 80.0%)); taking it for "
            "that would choose on the test set.") in text
    assert "| `pat_awp` | `pat_long` | does AWP add robustness to PGD-AT? | 1 | 2 | -25.00 | 1 |" \
        in text
    assert "| `at_alp_awp` | `pat_awp` |" in text and "not both evaluated" in text
    assert ("bash experiments/fmnist_long.sh pat_awp_wide trades_awp mart_awp at_alp_awp "
            "pat_awp_eps0.3 at_alp_awp_eps0.3` continues these (epochs of 1 min each so far, "
            "then AutoAttack: 1.5 h for `pat_awp`, 1.5 h for `pat_long`;") in text
    # No run at eps 0.3 is evaluated: its table lists the run, its goal says so.
    assert "## eps 0.1" in text and "## eps 0.3" in text
    assert text.index("| `pat_awp_eps0.3`:") > text.index("## eps 0.3") > row_start(text,
                                                                                    "trades_awp")
    assert "At eps 0.3: >= 80.0% clean and >= 50.0% AutoAttack on all 10,000 test images. " \
        "No run at this eps is trained yet." in text

    # Square: 75% after the gradient stages, 50% after it: 1 image of the 3 it
    # attacked; 1/3 has the Wilson 95% interval [6.1, 79.2].
    assert ("| `pat_awp` | 0.1 | 75.00 | 50.00 | 1 | 33.33% [6.1, 79.2] | stale (made when "
            "Square had broken 1 of the 2 images it had attacked, now 1 of 3): rerun it |") \
        in text
    assert "| `pat_long` | 0.1 | 75.00 | 50.00 | 1 | 33.33% [6.1, 79.2] | 1 of 1 / 0 of 1 |" \
        in text
    # As many images, but another one (image 1 held under AutoAttack): stale too.
    runs = [long_runs.read_run(str(root), "pat_long")]
    recheck_path.write_text(json.dumps(dict(recheck, square=dict(recheck["square"],
                                                                 images=[1]))))
    assert "| 1 | 33.33% [6.1, 79.2] | stale (made when" in long_runs.report(runs)
    # Other budgets than the script's defaults are named in the cell.
    recheck_path.write_text(json.dumps(dict(recheck, attacks=["apgd-ce 1x50"])))
    assert "| 1 of 1 / 0 of 1 (attacks: apgd-ce 1x50) |" in long_runs.report(runs)

    # The figure shows history.csv's validation curves and marks the kept epoch.
    figure = saved_figures["validation.png"]
    ax_clean, ax_adv = figure.axes
    found = lines(ax_adv)
    np.testing.assert_allclose(found["pat_awp"][1], [25, 50, 40])
    np.testing.assert_allclose(found["_kept pat_awp"][0], [2])
    np.testing.assert_allclose(found["_kept pat_awp"][1], [50])
    np.testing.assert_allclose(lines(ax_clean)["at_alp_awp"][1], [40, 50])
    assert "![validation curves](long/validation.png)" in text
    assert os.path.isfile(tmp_path / "docs" / "long" / "validation.png")


def test_square_findings_from_the_stages():
    record = {"n": 10000, "stages": [
        {"component": "clean", "robust_accuracy": 0.865, "n": 10000},
        {"component": "apgd-ce", "robust_accuracy": 0.7918, "n": 8650},
        {"component": "apgd-t", "robust_accuracy": 0.7848, "n": 7918},
        {"component": "fab-t", "robust_accuracy": 0.7809, "n": 7848},
        {"component": "square", "robust_accuracy": 0.7612, "n": 7809}]}
    assert long_runs.square_findings(record) == {
        "after_gradient": 0.7809, "after_square": 0.7612, "broken": 197, "attacked": 7809}
    fast = {"n": 10, "stages": record["stages"][:3]}
    assert long_runs.square_findings(fast) is None
    assert long_runs.square_findings({"n": 10}) is None


def test_the_reproduction_s_images_are_found_and_compared_paired(tmp_path):
    x_full = np.arange(4 * 3, dtype=np.float32).reshape(4, 3)
    y_full = np.array([0, 1, 2, 3])
    assert long_runs.match_indices(x_full[[2, 0]], y_full[[2, 0]], x_full, y_full) == [2, 0]
    with pytest.raises(ValueError, match="0 test images match"):
        long_runs.match_indices(x_full[:1] + 0.5, y_full[:1], x_full, y_full)
    twice = np.concatenate([x_full, x_full[:1]]), np.r_[y_full, 0]
    with pytest.raises(ValueError, match="2 test images match"):
        long_runs.match_indices(x_full[:1], y_full[:1], *twice)

    root = tmp_path / "runs"
    _write_run(root, "pat_awp", [(0.5, 0.25)], kept=1, clean="1110", robust="1100")
    runs = [long_runs.read_run(str(root), "pat_awp")]
    # The reproduction's images are test images 2 and 0: the run is correct on
    # both clean and keeps image 0 only under AutoAttack; the reproduction's
    # pat keeps image 2 only. One discordant image each way: p = 1.
    baseline = {"clean": {"correct": [1, 1]}, "autoattack": {"eps": 0.1, "correct": [1, 0]},
                "indices": [2, 0], "test_size": 4}
    ((run, row),) = long_runs.baseline_comparison(runs, baseline)
    assert row["clean"] == (1.0, 1.0) and row["autoattack"] == (0.5, 0.5)
    assert (row["mcnemar"]["a_only"], row["mcnemar"]["b_only"]) == (1, 1)
    text = long_runs.report(runs, baseline=baseline)
    # 2/2: Wilson 95% [34.2, 100.0]; 1/2: [9.5, 90.5].
    assert ("| `pat_awp` | 100.0 [34.2, 100.0] / 100.0 [34.2, 100.0] | 50.0 [9.5, 90.5] / "
            "50.0 [9.5, 90.5] | 1 | 1 | 1 |") in text
    # A run evaluated on fewer images (a subset in another order) is left out.
    assert long_runs.baseline_comparison(runs, dict(baseline, test_size=10000)) == []
    with pytest.raises(ValueError, match="3 subset indices for 2"):
        long_runs.baseline_comparison(runs, dict(baseline, indices=[2, 0, 1]))
    # The baseline's clean results on the whole test set check the indices:
    # its images 2 and 0 are correct there; indices [3, 0] pick a wrong one.
    clean_all = {"correct": [1, 0, 1, 0]}
    assert long_runs.baseline_comparison(runs, dict(baseline, clean_all=clean_all))
    with pytest.raises(ValueError, match="pick 1 clean results that differ"):
        long_runs.baseline_comparison(runs, dict(baseline, clean_all=clean_all,
                                                 indices=[3, 0]))
    with pytest.raises(ValueError, match="cover 3 images; the test set has 4"):
        long_runs.baseline_comparison(runs, dict(baseline, clean_all={"correct": [1, 0, 1]}))


def row_start(text, name):
    return text.index(f"| `{name}`:")


def test_an_eps_0_3_run_is_read_at_0_3_and_judged_by_its_own_goal(tmp_path):
    assert [long_runs.run_eps(n) for n in ("pat_awp", "pat_awp_eps0.3", "x_eps.25")] == \
        [0.1, 0.3, 0.25]
    root = tmp_path / "runs"
    # An eps 0.1 evaluation in an eps 0.3 run's folder is not its result.
    _write_run(root, "pat_awp_eps0.3", [(0.8, 0.5), (0.85, 0.45), (0.82, 0.55)], kept=3,
               clean="1111", robust="1100")
    assert long_runs.read_run(str(root), "pat_awp_eps0.3")["state"] == "trained"
    (root / "pat_awp_eps0.3" / "eval_autoattack_eps0.1").rename(
        root / "pat_awp_eps0.3" / "eval_autoattack_eps0.3")
    records_path = root / "pat_awp_eps0.3" / "eval_autoattack_eps0.3" / "results.json"
    records = json.loads(records_path.read_text())
    records[1]["eps"] = 0.3
    records_path.write_text(json.dumps(records))
    run = long_runs.read_run(str(root), "pat_awp_eps0.3")
    assert (run["eps"], run["state"]) == (0.3, "evaluated")
    text = long_runs.report([run, long_runs.read_run(str(root), "pat_awp")])
    # 4/4 clean reaches 80; 2/4 = 50% reaches 50 (the goal is >=).
    assert ("At eps 0.3: >= 80.0% clean and >= 50.0% AutoAttack on all 10,000 test images. "
            "The recipe validation picks (the highest validation PGD-10 at the kept epoch, "
            "55.0%), `pat_awp_eps0.3`: clean 100.00% (reached 80.0%); "
            "AutoAttack 50.00% (reached 50.0%). Its validation clean accuracy peaked at 85.0% "
            "(epoch 2 of 3), its validation PGD-10 accuracy at 55.0% (epoch 3); at the kept "
            "epoch 3 the held-out training images scored 82.0% clean, the test images "
            "100.00%.\n") in text  # reached: nothing to close
    assert "At eps 0.1: >= 88.5% clean" in text and "No run at this eps is trained yet." in text
    assert "| AutoAttack eps 0.3 |" in text


def test_a_run_whose_autoattack_has_a_resume_file_is_under_way(tmp_path):
    root = tmp_path / "runs"
    _write_run(root, "pat_awp", [(0.5, 0.25)], kept=1)
    assert long_runs.read_run(str(root), "pat_awp")["state"] == "trained"
    (root / "pat_awp" / "eval_autoattack_eps0.1").mkdir()
    (root / "pat_awp" / "eval_autoattack_eps0.1" / "autoattack.npz").write_bytes(b"")
    run = long_runs.read_run(str(root), "pat_awp")
    assert run["state"] == "AutoAttack under way"
    assert "- `pat_awp`: AutoAttack under way" in long_runs.report([run])


def test_per_image_results_must_match_n(tmp_path):
    root = tmp_path / "runs"
    _write_run(root, "pat_awp", [(0.5, 0.25)], kept=1, clean="11", robust="1")
    records = json.loads((root / "pat_awp" / "eval_autoattack_eps0.1" / "results.json")
                         .read_text())
    records[1]["n"] = 5
    (root / "pat_awp" / "eval_autoattack_eps0.1" / "results.json").write_text(
        json.dumps(records))
    run = long_runs.read_run(str(root), "pat_awp")
    with pytest.raises(ValueError, match="1 per-image results for n=5"):
        long_runs.accuracy(run["autoattack"])


def test_the_runs_are_the_script_s_and_each_has_a_config():
    script = open(os.path.join(REPO, "experiments", "fmnist_long.sh")).read()
    names = re.search(r"NAMES=\(([^)$]*)\)\n", script).group(1).split()
    assert tuple(names) == long_runs.RUNS
    for name in long_runs.RUNS:
        assert long_runs.describe(os.path.join(REPO, "configs"), name), name


def test_the_command_refuses_a_missing_runs_folder(tmp_path):
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "experiments", "fmnist_long_report.py"),
         f"--runs={tmp_path / 'nothing'}", f"--out={tmp_path / 'r.md'}"],
        capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 2
    assert "No runs folder" in result.stderr and "Traceback" not in result.stderr


def test_the_kept_subset_file_must_be_the_baseline_s(tmp_path):
    # A baseline of 2 images (test images 2 and 0 of 4), and the indices kept
    # for it in the runs folder.
    baseline = tmp_path / "pat.json"
    baseline.write_text(json.dumps({"n": 2, "parts": {
        "clean": {"value": {"correct": [1, 1]}},
        "clean_all": {"value": {"correct": [1, 0, 1, 0]}},
        "autoattack@0.1": {"value": {"eps": 0.1, "correct": [1, 0]}}}}))
    runs = tmp_path / "runs"
    runs.mkdir()

    def report(source):
        (runs / long_runs.SUBSET_FILE).write_text(json.dumps(
            {"source": source, "indices": [2, 0], "test_size": 4}))
        return subprocess.run(
            [sys.executable, os.path.join(REPO, "experiments", "fmnist_long_report.py"),
             f"--runs={runs}", f"--out={tmp_path / 'r.md'}", f"--baseline={baseline}"],
            capture_output=True, text=True, cwd=REPO, timeout=300,
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))

    other = report(str(tmp_path / "other.json"))
    assert other.returncode == 2 and "Traceback" not in other.stderr
    assert "holds the images of" in other.stderr and "delete it" in other.stderr
    # The same file under another spelling of its path is the baseline's.
    same = report(os.path.join(str(tmp_path), ".", "pat.json"))
    assert same.returncode == 0, same.stderr


def test_the_recipe_validation_picks_is_paired_with_plain_pgd_at(tmp_path):
    def runs_with(robust, validation, folder):
        root = tmp_path / folder
        for name, correct in robust.items():
            _write_run(root, name, [(0.6, validation.get(name, 0.3))], kept=1, clean="1111",
                       robust=correct)
        return [long_runs.read_run(str(root), name) for name in long_runs.RUNS]

    # Validation picks mart_awp (PGD-10 0.5); it alone keeps image 0 against
    # pat_long: 1 discordant image. pat_awp is as robust on the test set.
    runs = runs_with({"pat_long": "0111", "pat_awp": "1111", "mart_awp": "1111"},
                     {"mart_awp": 0.5, "pat_awp": 0.4}, "a")
    assert long_runs.chosen_run(runs)["name"] == "mart_awp"
    tests = {(a, b): (question, result)
             for (a, b, question), result in long_runs.paired_tests(runs)}
    question, result = tests[("mart_awp", "pat_long")]
    assert question == "does the recipe validation picks add robustness to plain PGD-AT?"
    assert (result["a_only"], result["b_only"], result["p_value"]) == (1, 0, 1.0)
    assert len(tests) == len(long_runs.PAIRS) + 1
    assert "| `mart_awp` | `pat_long` | does the recipe validation picks" in \
        long_runs.report(runs)
    # The most robust on the test set does not decide: trades_awp keeps every
    # image, but validation still picks mart_awp.
    runs = runs_with({"pat_long": "0011", "mart_awp": "0111", "trades_awp": "1111"},
                     {"mart_awp": 0.5, "trades_awp": 0.45}, "b")
    assert long_runs.best_run(runs)["name"] == "trades_awp"
    assert ("mart_awp", "pat_long") in {(a, b) for (a, b, _), _ in long_runs.paired_tests(runs)}
    # Validation picks pat_awp (PAIRS has it against pat_long) or pat_long
    # itself: no pair is added.
    for best, folder in (("pat_awp", "c"), ("pat_long", "d")):
        runs = runs_with({"pat_long": "0011", "pat_awp": "0011", "mart_awp": "0111"},
                         {best: 0.5}, folder)
        assert long_runs.chosen_run(runs)["name"] == best
        assert len(long_runs.paired_tests(runs)) == len(long_runs.PAIRS)


def test_a_picked_recipe_not_yet_evaluated_is_named_with_the_best_evaluated_so_far(tmp_path):
    root = tmp_path / "runs"
    _write_run(root, "pat_awp", [(0.6, 0.3)], kept=1, clean="1111", robust="0111")
    _write_run(root, "trades_awp", [(0.7, 0.4), (0.7, 0.5)], kept=2)   # trained only
    runs = [long_runs.read_run(str(root), name) for name in long_runs.RUNS]
    assert long_runs.chosen_run(runs)["name"] == "trades_awp"
    assert ("The recipe validation picks (the highest validation PGD-10 at the kept epoch, "
            "50.0%), `trades_awp`, is not evaluated yet. The most robust evaluated so far, "
            "`pat_awp`: clean 100.00% (reached 88.5%); AutoAttack 75.00% (5.00 points short "
            "of 80.0%).") in long_runs.report(runs)
