"""atalp_keras.training.run_folder: the model card is written when a run
starts and marked finished when it ends; a finished folder is protected."""

import os

import pytest

from atalp_keras import artifacts, data
from atalp_keras.errors import UsageError
from atalp_keras.training import TrainConfig, run_folder
from atalp_keras.training.distribute import make_cluster


@pytest.fixture(scope="module")
def digits_info():
    return data.load_dataset("digits", seed=0)


def test_card_written_at_start_and_finished_at_end(tmp_path, digits_info):
    config = TrainConfig(model_dir=str(tmp_path / "run"), eps=0.2,
                         image_size=(8, 8), data_seed=3, max_test_examples=50,
                         method="trades").validate()
    run_dir = run_folder.check_run_dir(config, make_cluster("default"))
    assert run_dir.is_chief and not run_dir.finished
    assert not os.path.exists(run_dir.path)  # Checking writes nothing.

    card = run_folder.model_card(config, digits_info, "abc123")
    run_folder.start_run_dir(run_dir, "--eps=0.2\n", card)
    started = artifacts.read_model_card(run_dir.path)
    assert started == card and started.finished is None
    assert (started.dataset, started.data_seed, started.image_size) == ("digits", 3, [8, 8])
    assert (started.eps, started.step_size, started.method) == (0.2, 0.05, "trades")
    assert started.num_classes == 10 and len(started.class_names) == 10
    assert started.max_test_examples == 50 and started.commit == "abc123"
    with open(run_dir.folder.flags) as handle:
        assert handle.read() == "# git commit: abc123\n--eps=0.2\n"

    run_folder.finish_run_dir(run_dir, {"test": {"accuracy": 0.5}}, card)
    finished = artifacts.read_model_card(run_dir.path)
    assert finished.finished is not None and finished.created == started.created
    assert artifacts.read_json(run_dir.folder.metrics) == {"test": {"accuracy": 0.5}}

    # A finished run is refused unless overwrite, which clears its files.
    with pytest.raises(UsageError, match="finished run"):
        run_folder.check_run_dir(config, make_cluster("default"))
    again = TrainConfig(model_dir=config.model_dir, overwrite=True).validate()
    run_dir = run_folder.check_run_dir(again, make_cluster("default"))
    assert run_dir.finished
    run_folder.start_run_dir(run_dir, None, run_folder.model_card(again, digits_info, "x"))
    assert sorted(os.listdir(run_dir.path)) == [artifacts.CARD_FILE]


def test_a_file_as_model_dir_is_refused(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("")
    config = TrainConfig(model_dir=str(a_file)).validate()
    with pytest.raises(UsageError, match="is a file"):
        run_folder.check_run_dir(config, make_cluster("default"))
