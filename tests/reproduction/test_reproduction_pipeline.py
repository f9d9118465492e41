"""The reproduction command (experiments/reproduce.py) end to end on a tiny
budget: the report, its resumption, and one-line errors."""

import json
import os
import re
import shlex

import numpy as np

from figure_checks import assert_lines, saved_figures, shown_image, surface_quad_means  # noqa: F401
from reproduce_command import run_reproduce as _run


def _run_in_process(args):
    """What experiments/reproduce.py's main does, in this process (so the
    test can read the figures), with flags of its own."""
    from absl import flags

    from atalp_keras import cli
    from atalp_keras.cli import reproduce
    from atalp_keras.reproduction import pipeline

    flag_values = flags.FlagValues()
    names = reproduce.define_all_flags(flag_values)
    flag_values(["experiments/reproduce.py"] + args)
    command = ["python", "experiments/reproduce.py"] + [shlex.quote(a) for a in args]
    pipeline.run(reproduce.settings_from_flags(flag_values, names[0]), command,
                 cli.flags_to_text(flag_values, names[0] + names[1]))


def _check_figures(figures, run, methods, x_test):
    """The figures show summary.json's numbers (the report's), and the
    attention grid the test images, each model's PGD twins and predictions."""
    import keras

    aggregate = json.loads((run / "summary.json").read_text())["runs"][0]["aggregate"]

    def percent(method, key):
        return 100 * aggregate[method][key]["mean"]
    for threat, label in (("white", "{} (white-box)"), ("gray", "{} <- gray"),
                          ("black", "{} <- black")):
        (ax,) = figures[f"iterations_{threat}.png"].axes
        assert_lines(ax, {label.format(m): ([2, 3], [percent(m, f"{threat}@{k}@0.2")
                                                     for k in (2, 3)]) for m in methods})
    (ax,) = figures["accuracy_vs_eps.png"].axes
    assert_lines(ax, {f"{m} / PGD-2": ([0.0, 0.1, 0.2], [
        percent(m, "clean@0.2"), percent(m, "pgd1@0.1"), percent(m, "pgd1@0.2")])
        for m in methods})
    landscapes = json.loads((run / "landscapes.json").read_text())
    panels = figures["landscape.png"].axes
    assert [ax.get_title() for ax in panels] == list(methods)
    for ax, method in zip(panels, methods):
        np.testing.assert_allclose(ax.collections[0].get_array(),
                                   surface_quad_means(landscapes[method]["z"]), rtol=1e-6)
    # One image (--attention_images=1): tiny ResNet, 4 stages.
    rows = np.array(figures["attention.png"].axes).reshape(len(methods), 2 + 2 * 4)
    for row, method in zip(rows, methods):
        image = shown_image(row[0])
        assert any(np.array_equal(image, x[..., 0]) for x in x_test)
        image_adv = shown_image(row[1])
        assert 0 < np.max(np.abs(image_adv - image)) <= 0.2 + 1e-6
        model = keras.models.load_model(run / "models" / method / "seed0" / "classifier.keras")
        pred = np.argmax(model(np.stack([image, image_adv])[..., None], training=False), -1)
        assert (row[0].get_title(), row[1].get_title()) == (
            f"clean: pred {pred[0]}", f"adv: pred {pred[1]}")


def test_quick_run_end_to_end_writes_the_report_and_resumes(tmp_path, saved_figures,
                                                             monkeypatch):
    report = tmp_path / "docs" / "results.md"
    # Every stage runs (sweep, main models, gray and black sources, the attack
    # suite, curves, figures, report) at the smallest budget that still runs
    # it: one PGD step in training, PGD-2 without restarts in the evaluation.
    args = ["--quick", "--methods=standard,at_alp", "--epochs=1", "--num_test=24",
            "--at_weights=0.3,1", "--alp_weights=0.5", "--tiny_widths=4,4,4,4",
            "--num_steps=1", "--batch_size=128", "--sweep_train_examples=300",
            "--max_val_examples=40", "--eval_eps=0.2", "--pgd_steps=2", "--pgd_restarts=1",
            "--iterations=2,3", "--rays_queries=20", "--landscape_points=3",
            "--landscape_images=2", "--attention_images=1", "--curve_eps=0.1",
            f"--out={tmp_path / 'run'}", f"--report={report}"]
    # The first run in this process, to read the figures it draws; the
    # resumption below runs the real script.
    monkeypatch.chdir(tmp_path)
    _run_in_process(args)
    text = report.read_text()

    assert "QUICK VARIANT" in text and "--quick" in text
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
    from atalp_keras.data import load_dataset, to_numpy

    x_test, _ = to_numpy(load_dataset("digits", seed=0).test)
    _check_figures(saved_figures, tmp_path / "run", ("standard", "at_alp"), x_test)
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
    assert "python experiments/reproduce.py " + " ".join(args[:3]) in report.read_text()


def test_bad_flags_fail_with_one_line(tmp_path):
    result = _run(["--methods=standard,nope", f"--out={tmp_path}"], tmp_path)
    assert result.returncode == 2
    assert "nope" in result.stderr.strip().splitlines()[-1]
