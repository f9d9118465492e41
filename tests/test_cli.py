"""The product as users run it: train.py and evaluate.py end to end.

In-process runs call the real entry points (``train.run`` / ``evaluate.run``,
what ``main`` does) with argv parsed into a fresh ``FlagValues``; runs that
need their own process (kill -9, multi-worker, mirrored, exit codes) are
subprocesses. Everything is tiny: digits or generated images, a 6.6k-weight
ResNet, one or two PGD steps.
"""

import dataclasses
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for path in (REPO, os.path.join(REPO, "tests", "cli")):
    if path not in sys.path:
        sys.path.insert(0, path)

import evaluate  # noqa: E402
from atalp_keras import artifacts, cli  # noqa: E402
from atalp_keras.cli import train  # noqa: E402

from figure_checks import assert_lines, saved_figures  # noqa: E402,F401 (a fixture)
from train_runs import (EVAL_CONFIGS, TINY, env, parse, quick, read_json,  # noqa: E402
                        run_evaluate, run_train, script, write_image_folder)


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
    if artifacts.git_commit() != "unknown":
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
                            "| accuracy | 95% interval |")
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
    program = f"{module.__name__.rsplit('.', 1)[-1]}.py"
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


def test_evaluate_transfer_audit_and_plot(tmp_path, capsys, saved_figures):
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
    # The figure shows results.json's accuracies: clean at eps 0, then one
    # line per attack and threat model (not the worst case).
    written = read_json(out_dir / "results.json")
    (ax,) = saved_figures["accuracy_vs_eps.png"].axes
    acc = {(r["attack"], r.get("source"), r["eps"]): 100 * r["accuracy"] for r in written}
    assert_lines(ax, {
        "target / none": ([0.0], [acc["none", None, 0.0]]),
        "target / fgsm": ([0.1, 0.2], [acc["fgsm", None, 0.1], acc["fgsm", None, 0.2]]),
        "target / pgd": ([0.1, 0.2], [acc["pgd", None, 0.1], acc["pgd", None, 0.2]]),
        "target / pgd (from gray)": ([0.1, 0.2], [acc["pgd", "gray", 0.1],
                                                  acc["pgd", "gray", 0.2]])})
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
