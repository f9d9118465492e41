"""atalp_keras.training.run_folder: the model card is written when a run
starts and marked finished when it ends; a finished folder is protected; a
folder belongs to the settings it recorded; --overwrite clears it all."""

import dataclasses
import os

import pytest

from atalp_keras import artifacts, data
from atalp_keras.errors import UsageError
from atalp_keras.training import TrainConfig, run_folder
from atalp_keras.training import config as config_module
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

    # A finished run is refused unless overwrite, which clears its files,
    # the evaluation of the weights it replaces included.
    os.makedirs(run_dir.folder.eval)
    with open(os.path.join(run_dir.folder.eval, "results.json"), "w") as handle:
        handle.write("{}")
    with pytest.raises(UsageError, match="finished run"):
        run_folder.check_run_dir(config, make_cluster("default"))
    again = TrainConfig(model_dir=config.model_dir, overwrite=True).validate()
    run_dir = run_folder.check_run_dir(again, make_cluster("default"))
    assert run_dir.finished
    run_folder.start_run_dir(run_dir, None, run_folder.model_card(again, digits_info, "x"))
    assert sorted(os.listdir(run_dir.path)) == [artifacts.CARD_FILE,
                                                artifacts.CONFIG_FILE]


def test_a_file_as_model_dir_is_refused(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("")
    config = TrainConfig(model_dir=str(a_file)).validate()
    with pytest.raises(UsageError, match="is a file"):
        run_folder.check_run_dir(config, make_cluster("default"))


def _started(tmp_path, digits_info, **settings):
    """A run folder started (record, card) by a run of ``settings``."""
    config = TrainConfig(model_dir=str(tmp_path / "run"), **settings).validate()
    run_dir = run_folder.check_run_dir(config, make_cluster("default"))
    run_folder.start_run_dir(run_dir, "--x\n",
                             run_folder.model_card(config, digits_info, "c"))
    return config


def test_other_settings_refused_naming_each_difference(tmp_path, digits_info):
    config = _started(tmp_path, digits_info, method="at_alp", seed=0,
                      epochs=3, tiny_widths=(4, 8, 8, 16))
    recorded = artifacts.read_json(os.path.join(config.model_dir, artifacts.CONFIG_FILE))
    assert recorded["config"]["method"] == "at_alp"
    assert recorded["config"]["step_size"] == config.step_size  # Resolved.
    other = dataclasses.replace(config, method="standard", seed=5,
                                tiny_widths=(8, 8, 8, 8), epochs=2)
    with pytest.raises(UsageError) as error:
        run_folder.check_run_dir(other, make_cluster("default"))
    message = str(error.value)
    assert "\n" not in message
    for part in ("--method=at_alp -> standard", "--seed=0 -> 5",
                 "--tiny_widths=4,8,8,16 -> 8,8,8,8", "--epochs=3 -> 2",
                 "--overwrite"):
        assert part in message, part
    # Settings that cannot change the weights, and a longer run, may differ.
    same = dataclasses.replace(config, epochs=5, verbose=0, export=False,
                               export_dir="elsewhere", export_name="n",
                               export_version=3, flags_text="--y\n")
    assert run_folder.check_run_dir(same, make_cluster("default")).is_chief
    assert set(config_module.NON_WEIGHT_SETTINGS) == {
        "verbose", "flags_text", "overwrite", "model_dir", "export",
        "export_dir", "export_name", "export_version"}


def test_start_checks_again_under_the_lock(tmp_path, digits_info):
    # A run of other settings that started after this one was checked.
    config = TrainConfig(model_dir=str(tmp_path / "run"), seed=1).validate()
    run_dir = run_folder.check_run_dir(config, make_cluster("default"))
    _started(tmp_path, digits_info, seed=2)
    with pytest.raises(UsageError, match="--seed=2 -> 1"):
        run_folder.start_run_dir(run_dir, None,
                                 run_folder.model_card(config, digits_info, "c"))


def test_legacy_interrupted_run_refused_with_overwrite_hint(tmp_path):
    # What train.py before run_config.json left when killed: no record.
    folder = artifacts.RunFolder(tmp_path / "run")
    os.makedirs(folder.backup)
    (tmp_path / "run" / artifacts.FLAGS_FILE).write_text("--method=pat\n")
    config = TrainConfig(model_dir=folder.path).validate()
    with pytest.raises(UsageError) as error:
        run_folder.check_run_dir(config, make_cluster("default"))
    assert "from before" in str(error.value) and "--overwrite" in str(error.value)
    again = dataclasses.replace(config, overwrite=True)
    assert run_folder.check_run_dir(again, make_cluster("default")).is_chief


def test_overwrite_clears_an_interrupted_run(tmp_path, digits_info):
    config = _started(tmp_path, digits_info, seed=0)
    folder = artifacts.RunFolder(config.model_dir)
    for path in (folder.backup, folder.checkpoints, folder.logs):
        os.makedirs(path)
        open(os.path.join(path, "f"), "w").close()
    for path in (folder.history_json, folder.history_csv, folder.metrics):
        open(path, "w").close()
    os.makedirs(folder.eval)  # The old weights' evaluation: cleared too.
    again = TrainConfig(model_dir=config.model_dir, seed=5,
                        overwrite=True).validate()
    run_dir = run_folder.check_run_dir(again, make_cluster("default"))
    run_folder.start_run_dir(run_dir, None,
                             run_folder.model_card(again, digits_info, "c"))
    assert sorted(os.listdir(folder.path)) == sorted(
        [artifacts.CARD_FILE, artifacts.CONFIG_FILE])
    assert artifacts.read_json(folder.config)["config"]["seed"] == 5


def test_unwritable_model_dir_refused_before_anything(tmp_path):
    # A regular file as a parent: not writable for any user, root included.
    (tmp_path / "file").write_text("")
    config = TrainConfig(model_dir=str(tmp_path / "file" / "run")).validate()
    with pytest.raises(UsageError, match="Cannot write to --model_dir"):
        run_folder.check_run_dir(config, make_cluster("default"))
    assert sorted(os.listdir(tmp_path)) == ["file"]


def test_a_setting_newer_than_the_record_is_compared_with_what_the_run_trained_with():
    """A run recorded before pair_pass (or AWP) existed trained with one pass
    and no AWP: resuming it with another value is a change, not a new key."""
    from atalp_keras.training import TrainConfig, run_folder

    old = run_folder.record(TrainConfig(method="trades").validate())
    for name in ("pair_pass", "awp_gamma"):
        del old[name]
    assert run_folder.config_differences(old, TrainConfig(method="trades").validate()) == []
    assert run_folder.config_differences(
        old, TrainConfig(method="trades", pair_pass="separate").validate()) == \
        ["--pair_pass=joint -> separate"]
    assert run_folder.config_differences(
        old, TrainConfig(method="trades", awp_gamma=0.01).validate()) == \
        ["--awp_gamma=0.0 -> 0.01"]
