"""`--noclean_metrics` (issue 11, item 2): `pat` and `fast` skip the clean
forward that only logs `accuracy`/`ce_natural`; the setting reaches the model
from the command line and is part of the run's record."""

import os
import sys

from atalp_keras.training import TrainConfig, run_folder, train

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "cli"))
import train_runs  # noqa: E402


def _run(tmp_path, name, **settings):
    return train(TrainConfig(
        dataset="digits", max_train_examples=64, max_test_examples=32, epochs=1,
        batch_size=32, num_steps=1, eval_pgd_steps=1, eps=0.2,
        tiny_widths=(4, 4, 4, 4), verbose=0, export=False,
        model_dir=str(tmp_path / name), **settings))


def test_pat_without_clean_metrics_logs_adversarial_terms_only(tmp_path):
    with_clean = _run(tmp_path, "on", method="pat")["history"][0]
    without = _run(tmp_path, "off", method="pat", clean_metrics=False)["history"][0]
    assert {"accuracy", "ce_natural", "adv_accuracy"} <= set(with_clean)
    assert "accuracy" not in without and "ce_natural" not in without
    assert {"adv_accuracy", "ce_adv", "val_accuracy", "val_adv_accuracy"} <= set(without)


def test_paired_presets_keep_their_clean_logs(tmp_path):
    row = _run(tmp_path, "alp", method="alp", clean_metrics=False)["history"][0]
    assert {"accuracy", "ce_natural", "alp"} <= set(row)


def test_flag_reaches_the_config_and_must_match_on_resume():
    fv = train_runs.parse(train_runs.train, ["--method=pat", "--noclean_metrics"])
    assert fv.clean_metrics is False
    recorded = run_folder.record(TrainConfig(method="pat").validate())
    assert recorded["clean_metrics"] is True
    assert run_folder.config_differences(
        recorded, TrainConfig(method="pat", clean_metrics=False).validate()) == \
        ["--clean_metrics=true -> false"]
