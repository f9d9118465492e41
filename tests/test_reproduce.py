"""The reproduction report (experiments/reproduce.py): its sweep choice, its
validation split, and the whole command end to end on a tiny budget."""

import importlib.util
import os
import re
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "experiments", "reproduce.py")


def _load_script():
    spec = importlib.util.spec_from_file_location("reproduce", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # Defines no flags (only under __main__).
    return module


@pytest.fixture(scope="module")
def reproduce():
    return _load_script()


def test_select_best_picks_highest_validation_robust_accuracy(reproduce):
    grid = [
        {"at_weight": 0.1, "val_robust": 0.50, "val_clean": 0.95},
        {"at_weight": 0.3, "val_robust": 0.62, "val_clean": 0.90},
        {"at_weight": 1.0, "val_robust": 0.61, "val_clean": 0.99},
        {"at_weight": 3.0, "val_robust": 0.40, "val_clean": 0.97},
    ]
    assert reproduce.select_best(grid)["at_weight"] == 0.3


def test_select_best_breaks_ties_by_clean_accuracy_then_order(reproduce):
    grid = [
        {"alp_weight": 0.1, "val_robust": 0.6, "val_clean": 0.90},
        {"alp_weight": 0.5, "val_robust": 0.6, "val_clean": 0.93},
        {"alp_weight": 1.0, "val_robust": 0.6, "val_clean": 0.93},
    ]
    assert reproduce.select_best(grid)["alp_weight"] == 0.5


def test_select_best_refuses_empty_or_incomplete_grids(reproduce):
    with pytest.raises(ValueError, match="empty"):
        reproduce.select_best([])
    with pytest.raises(ValueError, match="val_clean"):
        reproduce.select_best([{"val_robust": 0.5}])


def test_compare_calls_differences_within_one_std_a_tie(reproduce):
    Stat = reproduce.Stat
    a = Stat([0.60, 0.62, 0.64], 360)  # std 0.02
    assert reproduce.compare(a, Stat([0.59, 0.61, 0.63], 360)) == 0
    assert reproduce.compare(a, Stat([0.50, 0.51, 0.52], 360)) == 1
    assert reproduce.compare(Stat([0.50, 0.51, 0.52], 360), a) == -1
    # One seed: the binomial standard error decides (~3.6 points at n=360).
    assert reproduce.compare(Stat([0.60], 360), Stat([0.58], 360)) == 0
    assert reproduce.compare(Stat([0.60], 360), Stat([0.50], 360)) == 1


def test_validation_split_never_meets_the_training_subset(reproduce, tmp_path, monkeypatch):
    """What train() trains on with max_train_examples and the sweep's
    validation split are disjoint and together the whole training set."""
    from atalp_keras import data, training

    info = data.load_dataset("digits", seed=0)
    limit, val_idx = reproduce.validation_split(info, 0.2, seed=3, data_seed=0)
    x_all, _ = data.to_numpy(info.train)
    seen = []
    original = training.data.make_pipeline

    def spy(dataset, *args, **kwargs):
        if kwargs.get("shuffle"):
            seen.append(data.to_numpy(dataset)[0])
        return original(dataset, *args, **kwargs)

    monkeypatch.setattr(training.data, "make_pipeline", spy)
    training.train(training.TrainConfig(
        dataset="digits", method="standard", epochs=1, tiny_widths=(4, 4, 4, 4),
        max_train_examples=limit, eval_pgd_steps=0, export=False, verbose=0, seed=3,
        model_dir=str(tmp_path / "run")))
    trained = seen[-1]
    assert len(trained) == limit and len(val_idx) == info.num_train - limit
    x_val, _ = reproduce.validation_arrays(info, val_idx, 0)
    np.testing.assert_array_equal(x_val, x_all[val_idx])
    train_rows = {row.tobytes() for row in trained}
    all_rows = {row.tobytes() for row in x_all}
    # Digits holds no duplicate images, so rows identify examples.
    assert len(all_rows) == len(x_all)
    assert not train_rows & {row.tobytes() for row in x_val}
    assert train_rows | {row.tobytes() for row in x_val} == all_rows


def _run(args, cwd):
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, SCRIPT] + args, cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_quick_run_end_to_end_writes_the_report_and_resumes(tmp_path):
    report = tmp_path / "docs" / "results.md"
    args = ["--quick", "--methods=standard,at_alp", "--epochs=1", "--num_test=40",
            "--at_weights=0.3,1", "--alp_weights=0.5", "--tiny_widths=4,4,4,4",
            "--eval_eps=0.2", "--iterations=5,10", "--rays_queries=50",
            "--landscape_points=5", "--landscape_images=2", "--attention_images=1",
            "--curve_eps=0.1", f"--out={tmp_path / 'run'}", f"--report={report}"]
    result = _run(args, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    text = report.read_text()

    assert "QUICK VARIANT" in text and "--quick" in text
    assert "python experiments/reproduce.py " + " ".join(args[:3]) in text
    assert re.search(r"\*\*Choice: at_weight = (0\.3|1), alp_weight = 0\.5\.\*\*", text)
    for method in ("standard", "at_alp"):
        rows = [line for line in text.splitlines() if line.startswith(f"| `{method}` |")]
        assert rows, method
        # The results row at eps 0.2: clean, FGSM, PGD, AA, RayS, worst, gray, black.
        numbers = [re.findall(r"\d+\.\d", row) for row in rows]
        assert any(len(found) >= 8 for found in numbers), rows
    assert "## Discussion" in text and "Ordering as measured" in text
    figures = tmp_path / "docs" / "results"
    for name in ("attention", "iterations_white", "iterations_gray", "iterations_black",
                 "landscape", "accuracy_vs_eps"):
        png = figures / f"{name}.png"
        assert png.is_file() and png.stat().st_size > 1000, name
        assert f"results/{name}.png" in text
    evals = sorted(os.listdir(tmp_path / "run" / "eval"))
    assert evals == ["at_alp_seed0.json", "standard_seed0.json"]

    # Resume: nothing is trained or evaluated again.
    classifier = tmp_path / "run" / "models" / "at_alp" / "seed0" / "classifier.keras"
    before = classifier.stat().st_mtime
    again = _run(args, tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "trained " not in again.stdout
    assert "reuse evaluation of at_alp_seed0" in again.stdout
    assert classifier.stat().st_mtime == before


def test_bad_flags_fail_with_one_line(tmp_path):
    result = _run(["--methods=standard,nope", f"--out={tmp_path}"], tmp_path)
    assert result.returncode == 2
    assert "nope" in result.stderr.strip().splitlines()[-1]
