"""The product as users run it: train.py and evaluate.py end to end.

In-process runs call the real entry points (``train.run`` / ``evaluate.run``,
what ``main`` does) with argv parsed into a fresh ``FlagValues``; runs that
need their own process (kill -9, multi-worker, mirrored, exit codes) are
subprocesses. Everything is tiny: digits or generated images, a 6.6k-weight
ResNet, one or two PGD steps.
"""

import dataclasses
import gzip
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

import evaluate  # noqa: E402
import train  # noqa: E402
from atalp_keras import cli, training  # noqa: E402

CONFIGS = sorted(f for f in os.listdir(os.path.join(REPO, "configs"))
                 if f.endswith(".flags") and not f.endswith("_eval.flags"))
EVAL_CONFIGS = sorted(f for f in os.listdir(os.path.join(REPO, "configs"))
                      if f.endswith("_eval.flags"))
TINY = ["--tiny_widths=4,8,8,16", "--verbose=0"]


# ---------------------------------------------------------------- helpers


def parse(module, argv):
    fv = flags.FlagValues()
    module.define_flags(fv)
    fv([f"{module.__name__}.py"] + list(argv))
    return fv


def run_train(argv):
    """train.py's main on ``argv``; returns the metrics dict."""
    keras.backend.clear_session()
    return train.run(["train.py"], parse(train, argv))


def run_evaluate(argv):
    return evaluate.run(["evaluate.py"], parse(evaluate, argv))


def env():
    return dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2",
                PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))


def script(name):
    return [sys.executable, os.path.join(REPO, name)]


def read_json(path):
    with open(path) as handle:
        return json.load(handle)


def write_image_folder(root, classes=3, per_class=6, size=(12, 10), channels=3,
                       seed=0):
    """``root/<class>/<i>.png`` with random pixels; returns ``root``."""
    rng = np.random.default_rng(seed)
    for c in range(classes):
        os.makedirs(os.path.join(root, f"class_{c}"), exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, size + (channels,), dtype=np.uint8)
            keras.utils.save_img(os.path.join(root, f"class_{c}", f"{i}.png"),
                                 pixels, scale=False)
    return str(root)


def write_idx(root, num_train=24, num_test=12, size=8, seed=0):
    """MNIST-format gzipped IDX files (magic 0x803 images, 0x801 labels)."""
    rng = np.random.default_rng(seed)
    os.makedirs(root, exist_ok=True)
    for prefix, n in (("train", num_train), ("t10k", num_test)):
        images = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
        labels = (np.arange(n) % 4).astype(np.uint8)
        with gzip.open(os.path.join(root, f"{prefix}-images-idx3-ubyte.gz"),
                       "wb") as handle:
            handle.write(struct.pack(">IIII", 0x803, n, size, size))
            handle.write(images.tobytes())
        with gzip.open(os.path.join(root, f"{prefix}-labels-idx1-ubyte.gz"),
                       "wb") as handle:
            handle.write(struct.pack(">II", 0x801, n))
            handle.write(labels.tobytes())
    return str(root)


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def quick(tmp_path, name="run", *extra):
    """Flags of a one-epoch digits run writing under ``tmp_path``."""
    return TINY + [
        "--dataset=digits", "--max_train_examples=64", "--max_test_examples=32",
        "--epochs=1", "--batch_size=32", "--num_steps=1", "--eval_pgd_steps=1",
        "--eps=0.2", f"--model_dir={tmp_path / name}",
        f"--export_dir={tmp_path / 'exports'}", *extra]


# ------------------------------------------------------------- end to end


def test_train_then_evaluate_end_to_end(tmp_path, capsys, monkeypatch):
    result = run_train(quick(tmp_path, "run", "--export_name=digits_e2e"))
    run_dir = tmp_path / "run"
    for name in ("flags.txt", "classifier.keras", "model.keras", "metrics.json",
                 "history.json", "history.csv", "checkpoints/last.keras",
                 "checkpoints/best.keras"):
        assert (run_dir / name).is_file(), name
    assert not (run_dir / "backup").exists()  # Removed once the run is done.

    # flags.txt: the git commit, and it replays to the same configuration.
    # (HEAD may move while tests run: compare with what the run recorded.)
    commit = read_json(run_dir / "metrics.json")["git_commit"]
    assert commit == "unknown" or (
        len(commit) == 40 and set(commit) <= set("0123456789abcdef"))
    if training.git_commit() != "unknown":
        assert commit != "unknown"
    lines = (run_dir / "flags.txt").read_text().splitlines()
    assert lines[0] == f"# git commit: {commit}"
    assert "--method=at_alp" in lines and "--eps=0.2" in lines
    replayed = train.config_from_flags(
        parse(train, [f"--flagfile={run_dir / 'flags.txt'}"]))
    original = train.config_from_flags(parse(train, quick(
        tmp_path, "run", "--export_name=digits_e2e")))
    assert dataclasses.replace(replayed, flags_text=None).validate() == \
        dataclasses.replace(original, flags_text=None).validate()

    metrics = read_json(run_dir / "metrics.json")
    assert metrics["git_commit"] == commit
    assert [r["epoch"] for r in metrics["history"]] == [1]
    assert metrics["training"]["epochs_completed"] == 1
    assert metrics["test"]["n"] == 32
    assert 0 <= metrics["test"]["adv_accuracy"] <= 1
    assert result["export_path"] == str(tmp_path / "exports" / "digits_e2e" / "1")

    # The export: serving_default(images) -> logits/probabilities/classes,
    # equal to the Keras classifier's logits.
    export_dir = tmp_path / "exports" / "digits_e2e" / "1"
    loaded = tf.saved_model.load(str(export_dir))
    serve = loaded.signatures["serving_default"]
    assert list(serve.structured_input_signature[1]) == ["images"]
    assert set(serve.structured_outputs) == {"logits", "probabilities", "classes"}
    x = np.random.default_rng(0).uniform(size=(5, 8, 8, 1)).astype("float32")
    classifier = keras.models.load_model(run_dir / "classifier.keras")
    np.testing.assert_allclose(serve(images=tf.constant(x))["logits"].numpy(),
                               classifier(x, training=False).numpy(),
                               rtol=1e-5, atol=1e-5)
    meta = read_json(export_dir / "assets.extra" / "atalp_metadata.json")
    assert (meta["method"], meta["eps"], meta["dataset"]) == ("at_alp", 0.2, "digits")

    # evaluate.py on the export (eps and dataset come from its metadata).
    capsys.readouterr()
    out_dir = tmp_path / "eval"
    records = run_evaluate([f"--model={tmp_path / 'exports' / 'digits_e2e'}",
                            "--attacks=fgsm,pgd", "--num_steps=2",
                            "--num_examples=20", f"--out_dir={out_dir}",
                            "--verbose=0"])
    assert [r["attack"] for r in records] == ["none", "fgsm", "pgd", "worst-case"]
    saved = read_json(out_dir / "results.json")
    assert saved == json.loads(json.dumps(records))
    for r in saved:
        assert (r["model"], r["method"], r["n"]) == ("digits_e2e_v1", "at_alp", 20)
        assert 0 <= r["accuracy"] <= 1
    pgd = saved[2]
    assert (pgd["eps"], pgd["num_steps"], pgd["restarts"]) == (0.2, 2, 1)
    assert pgd["max_perturbation"] <= 0.2 + 1e-6
    table = (out_dir / "results.md").read_text()
    assert table.startswith("| model | method | attack | eps | steps | restarts | n "
                            "| accuracy |")
    assert len(table.strip().splitlines()) == 2 + 4
    assert "| digits_e2e_v1 | at_alp | pgd | 0.2 | 2 | 1 | 20 |" in table
    assert table in capsys.readouterr().out

    # The evaluation flagfiles run on it too (their --model replaced).
    for name in EVAL_CONFIGS:
        with monkeypatch.context() as patch:
            patch.chdir(REPO)
            eval_records = run_evaluate([
                f"--flagfile=configs/{name}", f"--model={run_dir}",
                "--num_examples=8", f"--out_dir={tmp_path / name}",
                "--verbose=0"])
        assert eval_records[0]["attack"] == "none", name
        assert (tmp_path / name / "results.md").is_file()

    # The same model as .keras (via its model_dir) scores the same.
    keras_records = run_evaluate([f"--model={run_dir}", "--attacks=none",
                                  "--num_examples=20", "--verbose=0",
                                  f"--out_dir={tmp_path / 'eval_keras'}"])
    assert keras_records[0]["accuracy"] == records[0]["accuracy"]
    assert keras_records[0]["model"] == "run"

    # Export versions are never overwritten: the next run adds version 2 ...
    fingerprint = (export_dir / "fingerprint.pb").read_bytes()
    second = run_train(quick(tmp_path, "run2", "--export_name=digits_e2e",
                             "--seed=1"))
    assert second["export_path"].endswith(os.path.join("digits_e2e", "2"))
    assert (export_dir / "fingerprint.pb").read_bytes() == fingerprint
    # ... an explicit existing version is refused before training ...
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run_train(quick(tmp_path, "run3", "--export_name=digits_e2e",
                        "--export_version=1"))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already exists" in err[0]
    assert not (tmp_path / "run3").exists()
    # ... and so is a model_dir that holds a finished run.
    with pytest.raises(SystemExit) as exit_info:
        run_train(quick(tmp_path, "run", "--export_name=digits_e2e"))
    assert exit_info.value.code == 2
    assert "finished run" in capsys.readouterr().err


# ----------------------------------------------------------------- configs


def _config_overrides(name, tmp_path, rgb_folder):
    overrides = TINY + [
        "--epochs=1", "--steps_per_epoch=1", "--batch_size=4",
        "--max_train_examples=8", "--max_test_examples=4", "--eval_pgd_steps=0",
        "--noexport", "--weights=none", f"--model_dir={tmp_path / 'run'}",
        f"--export_dir={tmp_path / 'exports'}"]
    if not name.startswith(("digits", "base")):
        overrides += [f"--dataset=folder:{rgb_folder}", "--image_size=16,16"]
        if "resnet101" in name or name == "flowers17_base.flags":
            # Their settings step on the tiny model here; the ResNet-101
            # itself in the slow test below (about a minute per step).
            overrides.append("--model=tiny")
    return overrides


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_parses_and_steps(name, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # Nested --flagfile paths are relative to it.
    rgb = write_image_folder(tmp_path / "rgb")
    flagfile = f"--flagfile=configs/{name}"
    expected = train.config_from_flags(parse(train, [flagfile])).validate()
    result = run_train([flagfile] + _config_overrides(name, tmp_path, rgb))
    config = result["config"]
    for key in ("method", "eps", "step_size", "num_steps", "optimizer",
                "learning_rate", "momentum", "lr_schedule", "weight_decay",
                "augment", "alp_weight", "at_weight", "trades_beta"):
        want = getattr(expected, key)
        assert config[key] == (list(want) if isinstance(want, tuple) else want), key
    assert config["lr_boundaries"] == list(expected.lr_boundaries)
    (row,) = result["history"]
    assert np.isfinite(row["loss"])
    if name.startswith("cifar10"):
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
    assert result["dataset"]["num_train"] + result["dataset"]["num_test"] == 18

    idx = write_idx(tmp_path / "mnist_like")
    result = run_train(quick(tmp_path, "idx_run", f"--dataset=idx:{idx}",
                             "--augment=crop", "--max_train_examples=0",
                             "--max_test_examples=0", "--batch_size=8"))
    assert result["dataset"]["num_classes"] == 4
    assert result["dataset"]["input_shape"] == [8, 8, 1]
    assert (result["dataset"]["num_train"], result["dataset"]["num_test"]) == (24, 12)
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
    assert metrics["training"]["resumed_from_epoch"] >= done
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


def test_bad_input_exits_2_with_one_line(tmp_path):
    empty_class = write_image_folder(tmp_path / "empty_class", classes=2)
    os.makedirs(os.path.join(empty_class, "class_empty"))
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    base = TINY + [f"--model_dir={tmp_path / 'run'}",
                   f"--export_dir={tmp_path / 'exports'}"]
    cases = {
        "unknown dataset": ("train.py", base + ["--dataset=imagenet21k"]),
        "missing folder": ("train.py", base + [f"--dataset=folder:{tmp_path}/nope"]),
        "empty class folder": ("train.py", base + [f"--dataset=folder:{empty_class}"]),
        "eps on 0-255 scale": ("train.py", base + ["--eps=8"]),
        "missing flagfile": ("train.py", base + [f"--flagfile={tmp_path}/no.flags"]),
        "export dir is a file": ("train.py", base + [f"--export_dir={a_file}"]),
        "unknown attack": ("evaluate.py", [f"--model={tmp_path}",
                                           "--attacks=fgsm,bogus"]),
    }
    processes = {name: subprocess.Popen(script(entry) + args, env=env(),
                                        stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
                 for name, (entry, args) in cases.items()}
    for name, process in processes.items():
        _, err = process.communicate(timeout=300)
        assert process.returncode == 2, (name, err[-2000:])
        assert "Traceback" not in err, (name, err)
        assert len(err.strip().splitlines()) == 1, (name, err)
    assert not (tmp_path / "run").exists()  # Bad input writes nothing.


@pytest.mark.parametrize("module, argv, message", [
    (train, ["--learning_rat=0.1"], "learning_rat"),
    (train, ["--step_size=1/0"], "fraction such as 8/255"),
    (train, ["--eps=300/255"], "0-255 scale"),
    (train, ["--lr_schedule=piecewise"], "lr_boundaries"),
    (train, ["--batch_size=0"], "batch_size"),
    (train, ["--model=nets/missing.keras"], "No .keras file"),
    (evaluate, ["--model=/nonexistent/model.keras"], "No model at this path"),
    (evaluate, ["--eps=8/255,30", "--model=x"], "0-255 scale"),
    (evaluate, ["--attacks=pgd:num_step=5", "--model=x"], "takes no option"),
])
def test_bad_input_in_process_is_one_line_exit_2(module, argv, message, capsys,
                                                 tmp_path):
    """The same contract, through the entry points' own parser and main."""
    program = f"{module.__name__}.py"
    fv = flags.FlagValues()
    module.define_flags(fv)
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_flags([program] + argv + [f"--out_dir={tmp_path}"]
                        if module is evaluate else [program] + argv
                        + [f"--model_dir={tmp_path}/run"], fv, program)
        module.run([program], fv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"{program}: error: ")
    assert message in err[0]


# --------------------------------------------- transfer, audit, plot (issue 4)


def _save_classifier(path, seed, input_shape=(8, 8, 1), classes=10):
    import atalp_keras as ak

    keras.utils.set_random_seed(seed)
    model = ak.tiny_resnet(input_shape, classes, widths=(4, 8, 8, 16))
    model.save(path)
    return str(path)


def test_evaluate_transfer_audit_and_plot(tmp_path, capsys):
    target = _save_classifier(tmp_path / "target.keras", 0)
    gray = _save_classifier(tmp_path / "gray.keras", 1)
    out_dir = tmp_path / "eval"
    capsys.readouterr()
    records = run_evaluate([f"--model={target}", "--dataset=digits", "--eps=0.1,0.2",
                            "--attacks=fgsm,pgd", "--num_steps=2", "--num_examples=24",
                            f"--source_model={gray}", "--audit_examples=16",
                            f"--out_dir={out_dir}", "--verbose=0"])
    transfer = [r for r in records if r.get("threat_model") == "transfer"]
    assert [(r["attack"], r["eps"], r["source"]) for r in transfer] == \
        [("pgd", 0.1, "gray"), ("pgd", 0.2, "gray")]
    assert all(r["max_perturbation"] <= r["eps"] + 1e-6 for r in transfer)
    assert (out_dir / "accuracy_vs_eps.png").stat().st_size > 1000
    checks = read_json(out_dir / "audit.json")
    names = [c["check"] for c in checks]
    assert names[:2] == ["perturbation_bounds", "gradient_free_vs_white_box"]
    assert {"logits", "gradients", "large_eps", "restarts"} <= set(names)
    assert all(c["status"] in ("PASS", "WARN", "SKIP") for c in checks)
    out = capsys.readouterr().out
    assert "PASS  perturbation_bounds" in out
    assert "pgd (from gray)" in (out_dir / "results.md").read_text()


@pytest.mark.parametrize("shape, classes, fragment", [
    ((9, 9, 1), 10, "takes images of shape (9, 9, 1)"),
    ((8, 8, 1), 5, "predicts 5 classes"),
])
def test_evaluate_refuses_incompatible_source(tmp_path, capsys, shape, classes, fragment):
    target = _save_classifier(tmp_path / "target.keras", 0)
    source = _save_classifier(tmp_path / "source.keras", 1, shape, classes)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run_evaluate([f"--model={target}", "--dataset=digits", "--eps=0.1",
                      f"--source_model={source}", f"--out_dir={tmp_path / 'e'}"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0]
