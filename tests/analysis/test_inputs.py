"""atalp_keras.analysis.inputs: models from run folders and the test split
their model card names (the split-seed fix of issue 9)."""

import json
import os

import numpy as np
import pytest

from analysis.helpers import write_run_folder
from atalp_keras import artifacts
from atalp_keras.analysis import inputs
from atalp_keras.analysis.settings import LandscapeSettings
from atalp_keras.data import load_dataset, to_numpy
from atalp_keras.errors import UsageError


def _digits_test_images(data_seed, limit):
    x, y = to_numpy(load_dataset("digits", seed=data_seed).test, limit=limit)
    return x, y


def test_analysis_data_is_the_runs_test_split_whatever_the_attack_seed(resnet, tmp_path):
    run = write_run_folder(tmp_path, resnet, "run", data_seed=0)
    for attack_seed in (0, 1, 7):
        settings = LandscapeSettings(models=(run,), out=str(tmp_path / "out"),
                                     seed=attack_seed)
        models = [inputs.load_model(p, "models") for p in settings.models]
        source = inputs.resolve_data(models, settings.dataset, settings.data_dir,
                                     settings.data_seed, settings.image_size)
        assert source.data_seed == 0 and source.origin == run
        _, x, y, _ = inputs.load_test_split(source, 360)
        x0, y0 = _digits_test_images(0, 360)
        np.testing.assert_array_equal(x, x0)
        np.testing.assert_array_equal(y, y0)
    # The check can fail: another split seed gives other "test" images.
    x1, _ = _digits_test_images(1, 360)
    assert not np.array_equal(x1, x0)


def test_run_folder_input_reads_its_card(resnet, tmp_path):
    names = [f"digit {i}" for i in range(10)]
    run = write_run_folder(tmp_path, resnet, "my_run", data_seed=3, class_names=names)
    for path in (run, os.path.join(run, artifacts.CLASSIFIER_FILE)):
        model = inputs.load_model(path, "models", need_stages=True)
        assert model.name == "my_run"
        assert model.input_shape == (8, 8, 1)
        assert (model.data.dataset, model.data.data_seed) == ("digits", 3)
        assert model.data.class_names == tuple(names)
        np.testing.assert_allclose(model.model(np.zeros((1, 8, 8, 1), np.float32)),
                                   resnet(np.zeros((1, 8, 8, 1), np.float32)), atol=1e-6)


def test_legacy_run_folder_falls_back_to_metrics(resnet, tmp_path):
    run = tmp_path / "legacy"
    run.mkdir()
    resnet.save(str(run / artifacts.CLASSIFIER_FILE))
    (run / artifacts.METRICS_FILE).write_text(json.dumps(
        {"config": {"dataset": "digits", "data_seed": 2}}))
    model = inputs.load_model(str(run), "models")
    assert (model.data.dataset, model.data.data_seed) == ("digits", 2)


def test_flags_contradicting_the_card_are_refused(resnet, tmp_path):
    run = write_run_folder(tmp_path, resnet, "run", data_seed=0)
    model = inputs.load_model(run, "models")
    with pytest.raises(UsageError, match=r"--data_seed=1 differs from the model card"):
        inputs.resolve_data([model], data_seed=1)
    with pytest.raises(UsageError, match=r"--dataset=idx:/x differs"):
        inputs.resolve_data([model], dataset="idx:/x")
    # Agreeing flags and a moved data folder are fine.
    source = inputs.resolve_data([model], dataset="digits", data_seed=0, data_dir="/data")
    assert (source.data_seed, source.data_dir) == (0, "/data")


def test_models_trained_on_different_splits_are_refused(resnet, tmp_path):
    runs = [write_run_folder(tmp_path, resnet, f"run{s}", data_seed=s) for s in (0, 1)]
    models = [inputs.load_model(p, "models") for p in runs]
    with pytest.raises(UsageError, match="trained on different data"):
        inputs.resolve_data(models)


def test_without_a_card_the_flags_decide(model_files):
    model = inputs.load_model(model_files["target"], "models")
    assert model.data is None and model.name == "target"
    source = inputs.resolve_data([model], data_seed=5)
    assert (source.dataset, source.data_seed, source.origin) == ("digits", 5, "flags")
    assert inputs.resolve_data([model]).data_seed == 0


def test_bad_paths_are_usage_errors(model_files, tmp_path):
    with pytest.raises(UsageError, match="--models: no such file or folder"):
        inputs.load_model(str(tmp_path / "missing.keras"), "models")
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(UsageError, match="--model="):
        inputs.load_model(str(tmp_path / "notes.txt"), "model")
    with pytest.raises(UsageError, match=r"\.keras classifier"):
        inputs.load_model(model_files["saved_model"], "models", need_stages=True)
