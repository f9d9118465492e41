"""atalp_keras.cli.train (``train.py``, ``atalp-train``) end to end: every
config steps, data sources, precision/XLA, schedules, kill -9 and resume,
multi-worker and mirrored runs. Tiny models, one or two PGD steps."""

import json
import os
import signal
import subprocess
import time

import keras
import numpy as np
import pytest

# Registers ATALPModel for keras.models.load_model of checkpoints/*.keras
# (`import atalp_keras` is lazy and no longer does it).
import atalp_keras.model  # noqa: F401
from train_runs import (CONFIGS, REPO, TINY, env, free_ports, parse, quick,
                        read_json, run_train, script, train, write_idx,
                        write_image_folder)


# ----------------------------------------------------------------- configs


RESNET18_CONFIG = "cifar10_resnet18_at_alp.flags"  # the config that steps the ResNet-18


def _config_overrides(name, tmp_path, rgb_folder):
    overrides = TINY + [
        "--epochs=1", "--steps_per_epoch=1", "--batch_size=4",
        "--max_train_examples=8", "--max_test_examples=4", "--eval_pgd_steps=0",
        # A quarter of the 8 examples, so every config's held-out split keeps
        # at least one (the long fmnist configs hold out 5%: 0 of 8).
        "--validation_split=0.25",
        "--noexport", "--weights=none", f"--model_dir={tmp_path / 'run'}",
        f"--export_dir={tmp_path / 'exports'}"]
    if not name.startswith(("digits", "base")):
        overrides += [f"--dataset=folder:{rgb_folder}", "--image_size=16,16"]
        if ("resnet101" in name or name == "flowers17_base.flags" or name.startswith("fmnist")
                or (name.startswith("cifar10") and name != RESNET18_CONFIG)):
            # Their settings step on the tiny model here: the ResNet-101 in the
            # slow test below (about a minute per step), the 28x28 fmnist
            # ResNet in tests/backbones (tracing it per config cost minutes);
            # ResNet-18 steps once, with RESNET18_CONFIG.
            overrides.append("--model=tiny")
    return overrides


# What each config says, written out here (from the configs' documented recipes:
# README "Configs", docs/METHOD.md), not read back from the file under test.
# Per family first, then what a config changes.
_FAMILY = {
    "base": dict(eps=8 / 255, step_size=2 / 255, num_steps=7, optimizer="sgd",
                 learning_rate=0.1, momentum=0.9, lr_schedule="constant", weight_decay=0.0,
                 augment="none", lr_boundaries=[]),
    "cifar10": dict(eps=8 / 255, step_size=2 / 255, num_steps=7, optimizer="sgd",
                    learning_rate=0.1, momentum=0.9, lr_schedule="piecewise",
                    weight_decay=5e-4, augment="crop_flip", lr_boundaries=[75.0, 90.0]),
    "digits": dict(eps=0.2, step_size=0.05, num_steps=7, optimizer="sgd", learning_rate=0.05,
                   momentum=0.9, lr_schedule="cosine", weight_decay=5e-4, augment="none",
                   lr_boundaries=[]),
    "flowers17": dict(eps=8 / 255, step_size=2 / 255, num_steps=7, optimizer="sgd",
                      learning_rate=0.01, momentum=0.9, lr_schedule="piecewise",
                      weight_decay=1e-4, augment="crop_flip", lr_boundaries=[25.0, 35.0]),
    "fmnist": dict(eps=0.1, step_size=0.025, num_steps=7, optimizer="sgd", learning_rate=0.05,
                   momentum=0.9, lr_schedule="cosine", weight_decay=5e-4, augment="none",
                   lr_boundaries=[]),
}
_CHANGES = {
    "cifar10_resnet18_trades.flags": dict(num_steps=10, weight_decay=2e-4),
    "digits_trades.flags": dict(num_steps=10),
    "fmnist_trades.flags": dict(num_steps=10),
    "fmnist_trades_awp.flags": dict(num_steps=10),
    "fmnist_mart_awp.flags": dict(num_steps=10),
    "flowers17_resnet101_at_alp.flags": dict(eps=0.25, step_size=0.0625),
    "flowers17_resnet101_at_alp_eps0.5.flags": dict(eps=0.5, step_size=0.125),
    "fmnist_pat_awp_eps0.3.flags": dict(eps=0.3, step_size=0.075),
    "fmnist_at_alp_awp_eps0.3.flags": dict(eps=0.3, step_size=0.075, alp_weight=0.5,
                                           at_weight=0.3),
    "fmnist_at.flags": dict(at_weight=0.3),
    "fmnist_at_alp.flags": dict(alp_weight=0.5, at_weight=0.3),
    "fmnist_at_alp_awp.flags": dict(alp_weight=0.5, at_weight=0.3),
}
_METHODS = ("at_alp", "alp", "at", "pat", "trades", "fast", "standard", "mart")


def _expected_settings(name):
    """The settings a config names, from the tables above; the method is the
    file name's (``digits_pat`` -> pat, ``fmnist_pat_awp`` -> pat), at_alp for bases."""
    family = name.split("_")[0].removesuffix(".flags")
    assert family in _FAMILY, f"{name}: add its family to _FAMILY"
    words = name.removesuffix(".flags").split("_")
    method = "at_alp"  # The bases' preset.
    for candidate in _METHODS:  # at_alp first, so its "at" word is not read as at.
        size = candidate.count("_") + 1
        if any("_".join(words[i:i + size]) == candidate for i in range(len(words))):
            method = candidate
            break
    expected = dict(_FAMILY[family], alp_weight=None, at_weight=None, trades_beta=None,
                    method=method)
    expected.update(_CHANGES.get(name, {}))
    return expected


def test_the_written_out_expectations_cover_every_config():
    assert set(_CHANGES) <= set(CONFIGS)
    assert {n: _expected_settings(n)["method"] for n in
            ("base.flags", "fmnist_long_base.flags", "fmnist_pat_awp_wide.flags",
             "fmnist_mart_awp.flags", "cifar10_resnet18_alp.flags", "digits_at.flags",
             "digits_standard.flags", "fmnist_pat_long.flags")} == {
        "base.flags": "at_alp", "fmnist_long_base.flags": "at_alp",
        "fmnist_pat_awp_wide.flags": "pat", "fmnist_mart_awp.flags": "mart",
        "cifar10_resnet18_alp.flags": "alp", "digits_at.flags": "at",
        "digits_standard.flags": "standard", "fmnist_pat_long.flags": "pat"}


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_parses_and_steps(name, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # The run's relative paths (runs/, saved_models/) land here.
    rgb = write_image_folder(tmp_path / "rgb")
    flagfile = f"--flagfile=configs/{name}"
    expected = _expected_settings(name)
    result = run_train([flagfile] + _config_overrides(name, tmp_path, rgb))
    config = result["config"]
    for key, want in expected.items():
        if isinstance(want, float):
            assert config[key] == pytest.approx(want, rel=1e-12), key
        else:
            assert config[key] == want, key
    (row,) = result["history"]
    assert np.isfinite(row["loss"])
    if name == RESNET18_CONFIG:
        assert result["model"]["name"] == "resnet18"


@pytest.mark.slow
@pytest.mark.parametrize("name", [c for c in CONFIGS if "resnet101" in c])
def test_resnet101_configs_step_on_32x32(name, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    rgb = write_image_folder(tmp_path / "rgb", size=(32, 32))
    overrides = [o for o in _config_overrides(name, tmp_path, rgb)
                 if not o.startswith(("--image_size", "--model="))]
    result = run_train([f"--flagfile=configs/{name}", "--image_size=32,32"]
                       + overrides)
    assert result["model"]["name"] == "resnet101"
    assert np.isfinite(result["history"][0]["loss"])


# ------------------------------------------------------------ data sources


def test_folder_and_idx_datasets_train(tmp_path):
    folder = write_image_folder(tmp_path / "flowers", classes=3, channels=3)
    result = run_train(quick(tmp_path, "folder_run", f"--dataset=folder:{folder}",
                             "--image_size=8,8", "--augment=crop_flip",
                             "--max_train_examples=0", "--max_test_examples=0",
                             "--batch_size=6"))
    assert result["dataset"]["num_classes"] == 3
    assert result["dataset"]["input_shape"] == [8, 8, 3]
    assert result["dataset"]["class_names"] == ["class_0", "class_1", "class_2"]
    # 18 images: the test split, the training set and its held-out 10%.
    assert (result["dataset"]["num_train"] + result["validation"]["n"]
            + result["dataset"]["num_test"]) == 18

    idx = write_idx(tmp_path / "mnist_like")
    result = run_train(quick(tmp_path, "idx_run", f"--dataset=idx:{idx}",
                             "--augment=crop", "--max_train_examples=0",
                             "--max_test_examples=0", "--batch_size=8"))
    assert result["dataset"]["num_classes"] == 4
    assert result["dataset"]["input_shape"] == [8, 8, 1]
    assert (result["dataset"]["num_train"] + result["validation"]["n"],
            result["dataset"]["num_test"]) == (24, 12)
    assert os.path.isdir(os.path.join(result["export_path"], "variables"))


def test_mixed_bfloat16_and_jit_compile_step(tmp_path):
    result = run_train(quick(tmp_path, "bf16", "--mixed_precision=mixed_bfloat16",
                             "--noexport", "--eval_pgd_steps=0"))
    assert np.isfinite(result["history"][0]["loss"])
    assert keras.mixed_precision.global_policy().name == "float32"  # Restored.
    classifier = keras.models.load_model(tmp_path / "bf16" / "classifier.keras")
    assert classifier.get_layer("conv1_conv").dtype_policy.name == "mixed_bfloat16"
    assert classifier(np.zeros((1, 8, 8, 1), "float32")).dtype == "float32"

    result = run_train(quick(tmp_path, "xla", "--jit_compile", "--noexport",
                             "--eval_pgd_steps=0", "--steps_per_execution=2"))
    assert result["training"]["jit_compile"] is True
    assert np.isfinite(result["history"][0]["loss"])


def test_sgd_schedules_and_weight_decay(tmp_path):
    result = run_train(quick(tmp_path, "piecewise", "--noexport", "--epochs=2",
                             "--steps_per_epoch=2", "--lr_schedule=piecewise",
                             "--lr_boundaries=1", "--learning_rate=0.1",
                             "--weight_decay=5e-4", "--eval_pgd_steps=0"))
    rates = [r["learning_rate"] for r in result["history"]]
    np.testing.assert_allclose(rates, [0.1, 0.01], rtol=1e-6)  # From epoch 2.
    classifier = keras.models.load_model(tmp_path / "piecewise" / "classifier.keras")
    kernel_layers = [layer for layer in classifier.layers if hasattr(layer, "kernel")]
    assert kernel_layers and all(
        isinstance(layer.kernel_regularizer, keras.regularizers.L2)
        and np.isclose(layer.kernel_regularizer.l2, 2.5e-4)
        for layer in kernel_layers)
    result = run_train(quick(tmp_path, "cosine", "--noexport", "--epochs=2",
                             "--steps_per_epoch=2", "--lr_schedule=cosine",
                             "--optimizer=adam", "--learning_rate=0.01",
                             "--eval_pgd_steps=0"))
    rates = [r["learning_rate"] for r in result["history"]]
    assert 0 < rates[1] < rates[0] < 0.01


# --------------------------------------------------- processes of their own


def test_kill_9_then_restart_finishes_all_epochs(tmp_path):
    command = script("train.py") + TINY + [
        "--epochs=4", "--steps_per_epoch=60", "--batch_size=32", "--num_steps=2",
        "--eval_pgd_steps=0", "--eps=0.2", "--noexport",
        f"--model_dir={tmp_path / 'run'}"]
    metadata = tmp_path / "run" / "backup" / "training_metadata.json"
    process = subprocess.Popen(command, env=env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while not metadata.exists():
        assert process.poll() is None, process.stderr.read().decode()[-3000:]
        assert time.time() < deadline, "no epoch finished in 300 s"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not (tmp_path / "run" / "metrics.json").exists()
    done = read_json(metadata)["epoch"]
    assert 1 <= done < 4

    second = subprocess.run(command, env=env(), capture_output=True, text=True,
                            timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    metrics = read_json(tmp_path / "run" / "metrics.json")
    # Same epoch count as an uninterrupted run, each epoch logged once.
    assert metrics["training"]["epochs_completed"] == 4
    assert [r["epoch"] for r in metrics["history"]] == [1, 2, 3, 4]
    assert metrics["training"]["resumed_from_epoch"] == done
    assert not (tmp_path / "run" / "backup").exists()


def test_multi_worker_two_processes_identical_weights(tmp_path):
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    command = script("train.py") + TINY + [
        "--distribution=multi_worker", "--max_train_examples=64",
        "--max_test_examples=32", "--epochs=2", "--batch_size=16", "--num_steps=1",
        "--eval_pgd_steps=1", "--eps=0.2", f"--model_dir={tmp_path / 'run'}",
        f"--export_dir={tmp_path / 'exports'}", "--export_name=mw"]
    workers = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster,
                                "task": {"type": "worker", "index": index}})
        workers.append(subprocess.Popen(
            command, env=dict(env(), TF_CONFIG=tf_config), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True))
    outputs = [w.communicate(timeout=600) for w in workers]
    for worker, (_, err) in zip(workers, outputs):
        assert worker.returncode == 0, err[-3000:]

    run_dir = tmp_path / "run"
    metrics = read_json(run_dir / "metrics.json")
    assert metrics["training"]["replicas"] == 2
    assert metrics["training"]["distribution"] == "multi_worker"
    chief = keras.models.load_model(run_dir / "classifier.keras")
    other = keras.models.load_model(run_dir / "workers" / "worker_1" / "classifier.keras")
    for a, b in zip(chief.get_weights(), other.get_weights()):
        np.testing.assert_array_equal(a, b)
    initial = keras.models.load_model(run_dir / "checkpoints" / "last.keras")
    assert initial.classifier.get_weights()[0].shape == chief.get_weights()[0].shape
    # Only the chief exports and writes the run's files.
    assert sorted(os.listdir(tmp_path / "exports" / "mw")) == ["1"]
    assert "Exported" in outputs[0][0] and "Exported" not in outputs[1][0]
    assert sorted(os.listdir(run_dir / "workers" / "worker_1")) == [
        "classifier.keras", "history.csv", "history.json"]


def test_mirrored_on_two_logical_cpus(tmp_path):
    proc = subprocess.run(
        script("train.py") + TINY + [
            "--num_cpu_devices=2", "--distribution=mirrored", "--jit_compile",
            "--max_train_examples=32", "--max_test_examples=16", "--epochs=1",
            "--batch_size=8", "--num_steps=1", "--eval_pgd_steps=1", "--eps=0.2",
            "--noexport", f"--model_dir={tmp_path / 'run'}"],
        env=env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = read_json(tmp_path / "run" / "metrics.json")
    assert (metrics["training"]["strategy"], metrics["training"]["replicas"]) == (
        "MirroredStrategy", 2)
    # XLA over logical CPU replicas fails in TF: switched off, with a note.
    assert metrics["training"]["jit_compile"] is False
    assert "jit_compile disabled" in metrics["training"]["jit_compile_note"]
    assert np.isfinite(metrics["history"][0]["loss"])


def test_help_exits_0_and_lists_generated_flags():
    proc = subprocess.run(script("train.py") + ["--help"], env=env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in ("--weight_decay", "--tiny_widths", "--num_cpu_devices", "--eps"):
        assert name in proc.stdout, name


def test_config_from_flags_uses_field_names_and_comma_lists():
    config = train.config_from_flags(parse(train, [
        "--image_size=12", "--tiny_widths=2,2,4,4", "--lr_boundaries=3,5",
        "--devices=/cpu:0", "--stage_layers=a,b", "--eps=8/255", "--noexport"]))
    assert config.image_size == (12, 12) and config.tiny_widths == (2, 2, 4, 4)
    assert config.lr_boundaries == (3.0, 5.0) and config.devices == ("/cpu:0",)
    assert config.stage_layers == ("a", "b") and config.export is False
    assert "--tiny_widths=2,2,4,4" in config.flags_text.splitlines()
    assert "--noexport" in config.flags_text.splitlines()
