"""Tables and result files, with AutoAttack's per-stage report."""

import json

import keras
import numpy as np
import pytest

from atalp_keras import attacks, evaluation

from evaluation_problem import tiny_problem  # noqa: F401 (a fixture)




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
                        "| accuracy | 95% interval |")
    assert lines[3].startswith("| cnn | unknown | pgd | 8/255 | 2 | 1 | 24 | ")
    low, high = evaluation.stats.wilson_interval(records[0]["accuracy"], 24)
    assert lines[2] == f"| cnn | unknown | none | - | - | - | 24 | " \
                       f"{100 * records[0]['accuracy']:.2f}% | [{100 * low:.1f}, {100 * high:.1f}] |"
    assert evaluation.format_eps(0.25) == "0.25"
    assert evaluation.format_eps(1 / 256) == "1/256"
    a_file = tmp_path / "file"
    a_file.write_text("")
    with pytest.raises(ValueError, match="is a file"):
        evaluation.write_results(records, a_file)


def test_results_md_holds_the_autoattack_stage_report(tmp_path):
    stages = [{"component": "clean", "robust_accuracy": 0.9, "seconds": 0.1, "n": 10},
              {"component": "apgd-ce", "robust_accuracy": 0.5, "seconds": 2.0, "n": 9}]
    records = [{"model": "m", "method": "pat", "attack": "autoattack", "eps": 0.1,
                "num_steps": 100, "restarts": None, "n": 10, "accuracy": 0.5,
                "stages": stages}]
    text = evaluation.write_results(records, tmp_path)
    # Wilson 95% at 5/10 by hand: centre 0.5, half 1.96 sqrt(0.025 + 1.96^2/400) / (1 + 1.96^2/10)
    # = 0.2634, so [23.7, 76.3].
    assert "| m | pat | autoattack | 0.1 | 100 | - | 10 | 50.00% | [23.7, 76.3] |" in text
    assert "## AutoAttack stages" in text
    assert "| m | autoattack | 0.1 | apgd-ce | 50.00% | 9 | 2.0 |" in text
    assert (tmp_path / "results.md").read_text() == text
    assert json.loads((tmp_path / "results.json").read_text())[0]["stages"] == stages
    assert evaluation.format_stage_report(records[:0]) == ""
