"""train.py and its run folder, with real processes: a folder in use is
refused, an interrupted run of other settings is refused, --overwrite starts
over, unwritable outputs are refused before training, exports clean up after
killed ones and print no TensorFlow INFO lines; --help, bad flagfiles and
messages in the flags' spelling."""

import os
import shutil
import signal
import subprocess
import tempfile
import time

import pytest
from absl import flags

from atalp_keras.cli import common
from train_runs import TINY, env, quick, read_json, run_train, script, train

NOISE = ("signature_serialization", "Sharding callback", "Writing fingerprint")


def _wait_for(path, process, seconds=300):
    deadline = time.time() + seconds
    while not os.path.exists(path):
        assert process.poll() is None, process.stderr.read().decode()[-3000:]
        assert time.time() < deadline, f"no {path} in {seconds} s"
        time.sleep(0.02)


def _one_error_line(proc):
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("train.py: error: "), lines
    return lines[0]


def test_locked_then_interrupted_folder_refuses_other_settings(tmp_path):
    run_dir = tmp_path / "run"
    command = script("train.py") + TINY + [
        "--method=at_alp", "--epochs=3", "--steps_per_epoch=40", "--batch_size=32",
        "--num_steps=1", "--eval_pgd_steps=0", "--eps=0.2", "--noexport",
        f"--model_dir={run_dir}"]
    first = subprocess.Popen(command, env=env(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    try:
        _wait_for(run_dir / "run.lock", first)
        # The same command again while the first trains: refused.
        second = subprocess.run(command, env=env(), capture_output=True, text=True,
                                timeout=300)
        assert f"pid {first.pid}" in _one_error_line(second)
        _wait_for(run_dir / "backup" / "training_metadata.json", first)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert read_json(run_dir / "run_config.json")["config"]["method"] == "at_alp"

    other = [a for a in command if not a.startswith("--method")] + ["--method=standard"]
    refused = subprocess.run(other, env=env(), capture_output=True, text=True,
                             timeout=300)
    assert "--method=at_alp -> standard" in _one_error_line(refused)

    # --overwrite starts over: nothing resumed from the killed at_alp run.
    over = subprocess.run(other + ["--overwrite", "--seed=5", "--epochs=1",
                                   "--steps_per_epoch=2"],
                          env=env(), capture_output=True, text=True, timeout=600)
    assert over.returncode == 0, over.stderr[-3000:]
    assert "Took over the lock" in over.stderr  # The killed run's lock.
    metrics = read_json(run_dir / "metrics.json")
    assert metrics["training"]["resumed_from_epoch"] == 0
    assert [r["epoch"] for r in metrics["history"]] == [1]
    assert (metrics["config"]["seed"], metrics["config"]["method"]) == (5, "standard")
    assert read_json(run_dir / "run_config.json")["config"]["seed"] == 5
    assert not (run_dir / "run.lock").exists() and not (run_dir / "backup").exists()


def _without_root_override():
    """A command prefix under which root obeys permission bits (it writes
    through them otherwise): drops the capabilities that override them."""
    if os.geteuid() != 0:
        return []
    caps = "-dac_override,-dac_read_search"
    return ["setpriv", f"--bounding-set={caps}", f"--inh-caps={caps}"]


def test_unwritable_outputs_refused_before_training():
    root = tempfile.mkdtemp(prefix="atalp-perm-")
    try:
        read_only, writable = os.path.join(root, "ro"), os.path.join(root, "rw")
        os.makedirs(read_only, mode=0o555)
        os.chmod(read_only, 0o555)
        os.makedirs(writable)
        base = TINY + ["--max_train_examples=16", "--epochs=1", "--batch_size=16",
                       "--num_steps=1", "--eval_pgd_steps=0", "--eps=0.2"]
        for flag, args in (
                ("--export_dir", [f"--model_dir={writable}/run",
                                  f"--export_dir={read_only}/exports"]),
                ("--model_dir", [f"--model_dir={read_only}/run", "--noexport"])):
            proc = subprocess.run(
                _without_root_override() + script("train.py") + base + args,
                env=env(), capture_output=True, text=True, timeout=300)
            line = _one_error_line(proc)
            assert f"Cannot write to {flag}" in line and "Traceback" not in proc.stderr
            assert not os.path.exists(os.path.join(writable, "run"))  # Nothing trained.
    finally:
        os.chmod(read_only, 0o755)
        shutil.rmtree(root)


def test_export_removes_killed_exports_temp_folders_quietly(tmp_path):
    base = tmp_path / "exports" / "q"
    dead = subprocess.Popen(["true"])
    dead.wait()
    (base / f".tmp-1-{dead.pid}" / "variables").mkdir(parents=True)
    (base / f".tmp-7-{os.getpid()}").mkdir()  # A live export's: kept.
    proc = subprocess.run(script("train.py") + quick(tmp_path, "run", "--export_name=q"),
                          env=env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(os.listdir(base)) == [f".tmp-7-{os.getpid()}", "1"]
    for noise in NOISE:
        assert noise not in proc.stderr, proc.stderr
    assert "git_commit" not in proc.stderr  # app.run printed the result dict.


@pytest.mark.parametrize("arg", ["--help", "--helpshort"])
def test_help_exits_0_with_the_commands_flags_only(arg):
    proc = subprocess.run(script("train.py") + [arg], env=env(), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "--model_dir" in proc.stdout and "--[no]overwrite" in proc.stdout
    assert "tensorflow." not in proc.stdout  # TensorFlow's own flags: --helpfull.


def test_missing_flagfile_is_one_clean_line(capsys):
    fv = flags.FlagValues()
    train.define_flags(fv)
    with pytest.raises(SystemExit) as exit_info:
        common.parse_flags(["train.py", "--flagfile=/no/such.flags"], fv, "train.py")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["train.py: error: Cannot read the flagfile: [Errno 2] No such "
                   "file or directory: '/no/such.flags'"]


def test_messages_spell_settings_as_flags(tmp_path, capsys):
    with pytest.raises(SystemExit):
        run_train(quick(tmp_path) + ["--tiny_widths=1,2"])
    err = capsys.readouterr().err
    assert "--tiny_widths must be 4 positive integers" in err
    assert "Received: --tiny_widths=1,2" in err and "(1, 2)" not in err
    assert common.flag_spelling(
        "Unknown `stage_layers`. Received: stage_layers=['a', 'b'], model='tiny'.",
        ["stage_layers", "model"]) == (
        "Unknown --stage_layers. Received: --stage_layers=a,b, --model=tiny.")
    assert common.flag_spelling("Received: weights=None", ["weights"]) == \
        "Received: --weights=''"
