"""--flagfile in the commands: an include is read relative to the file naming
it, and ``configs/<name>.flags`` is found wherever the package is installed
(issue 24, bug 1: the shipped configs worked only from the repository root)."""

import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest
from absl import flags

from atalp_keras.cli import common, flagfiles, train

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _parse(argv):
    fv = flags.FlagValues()
    train.define_flags(fv)
    common.parse_flags(["train.py"] + list(argv), fv, "train.py")
    return fv


def _error(capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        _parse(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err.strip().splitlines()


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        handle.write(text)
    return str(path)


def _assert_digits_at_alp(fv):
    # configs/digits_at_alp.flags, digits_base.flags and base.flags together
    # (values written out here, not read back from the files).
    assert fv["method"].value == "at_alp" and fv["dataset"].value == "digits"
    assert fv["eps"].value == pytest.approx(0.2) and fv["num_steps"].value == 7
    assert fv["eval_pgd_steps"].value == 10 and fv["export_dir"].value == "saved_models"


def test_a_shipped_config_by_absolute_path_reads_its_includes_from_any_folder(
        tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fv = _parse([f"--flagfile={REPO}/configs/digits_at_alp.flags", "--epochs=1"])
    _assert_digits_at_alp(fv)
    assert fv["epochs"].value == 1  # A later flag still wins.


def test_configs_slash_name_is_the_shipped_config_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _assert_digits_at_alp(_parse(["--flagfile=configs/digits_at_alp.flags"]))


def test_the_repository_root_keeps_working(monkeypatch):
    monkeypatch.chdir(REPO)
    _assert_digits_at_alp(_parse(["--flagfile=configs/digits_at_alp.flags"]))


def test_a_users_flagfile_includes_relative_to_itself(tmp_path, monkeypatch):
    _write(tmp_path / "mine" / "base.flags", "--eps=0.1\n--method=alp\n")
    _write(tmp_path / "mine" / "sub" / "run.flags",
           "# layers on ../base.flags\n--flagfile=../base.flags\n--method=pat\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    fv = _parse([f"--flagfile={tmp_path}/mine/sub/run.flags"])
    assert fv["eps"].value == pytest.approx(0.1) and fv["method"].value == "pat"


def test_an_include_written_for_the_working_directory_still_works(tmp_path, monkeypatch):
    # Before includes were file-relative a user's flagfile elsewhere named
    # the shipped configs by their path from the repository root.
    mine = _write(tmp_path / "mine.flags",
                  "--flagfile=configs/digits_at_alp.flags\n--epochs=2\n")
    monkeypatch.chdir(REPO)
    fv = _parse([f"--flagfile={mine}"])
    _assert_digits_at_alp(fv)
    assert fv["epochs"].value == 2


def test_a_missing_include_names_the_file_that_includes_it(tmp_path, capsys, monkeypatch):
    run = _write(tmp_path / "run.flags", "--flagfile=nope.flags\n")
    monkeypatch.chdir(tmp_path)
    (line,) = _error(capsys, [f"--flagfile={run}"])
    assert line.startswith("train.py: error: Cannot read the flagfile 'nope.flags' "
                           f"named in {run}: no such file in {tmp_path}")


def test_an_include_cycle_is_refused(tmp_path, capsys):
    a = _write(tmp_path / "a.flags", "--flagfile=b.flags\n")
    _write(tmp_path / "b.flags", "--epochs=3\n--flagfile=a.flags\n")
    (line,) = _error(capsys, [f"--flagfile={a}"])
    assert "it includes itself" in line and "a.flags -> " in line


def test_a_flagfile_with_no_value_is_one_line(capsys):
    (line,) = _error(capsys, ["--flagfile"])
    assert line == ("train.py: error: --flagfile needs a file. Received: --flagfile "
                    "with no value")


def test_every_shipped_include_is_relative_to_its_file():
    folder = flagfiles.shipped_configs_dir()
    assert folder == os.path.join(REPO, "configs")
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name)) as handle:
            for line in handle:
                if line.startswith("--flagfile="):
                    target = line.split("=", 1)[1].strip()
                    assert os.path.isfile(os.path.join(folder, target)), (name, target)


def _copy_project(dest):
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(os.path.join(REPO, "atalp_keras"), dest / "atalp_keras", ignore=ignore)
    shutil.copytree(os.path.join(REPO, "configs"), dest / "configs")
    shutil.copy(os.path.join(REPO, "setup.py"), dest)


def test_an_installed_wheel_ships_the_configs_and_the_console_script_finds_them(tmp_path):
    pytest.importorskip("wheel", reason="building the wheel needs the 'wheel' package")
    source = tmp_path / "source"
    _copy_project(source)
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-index", "-q", "-w", str(tmp_path / "dist"), str(source)],
        capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").iterdir()
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        shipped = {n for n in names if n.startswith("atalp_keras/configs/")}
        assert shipped == {f"atalp_keras/configs/{n}"
                           for n in os.listdir(os.path.join(REPO, "configs"))}
        archive.extractall(tmp_path / "site")
    work = tmp_path / "work"
    work.mkdir()
    # What the atalp-train console script runs (setup.py's entry point), with
    # the package imported from the unpacked wheel, in a folder with no configs.
    code = ("import sys, atalp_keras; print(atalp_keras.__file__); "
            "from atalp_keras.cli.train import main; "
            "sys.argv[0] = 'atalp-train'; main()")
    args = ["--flagfile=configs/digits_at_alp.flags", "--epochs=1", "--steps_per_epoch=1",
            "--batch_size=4", "--max_train_examples=8", "--max_test_examples=4",
            "--eval_pgd_steps=0", "--noexport", "--tiny_widths=4,8,8,16", "--verbose=0",
            "--num_steps=1", f"--model_dir={work / 'run'}"]
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "site"), KERAS_BACKEND="tensorflow",
               TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-c", code] + args, cwd=work, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines()[0].startswith(str(tmp_path / "site"))
    with open(work / "run" / "run_config.json") as handle:
        config = json.load(handle)
    config = config.get("config", config)
    assert config["method"] == "at_alp" and config["dataset"] == "digits"
    assert config["eps"] == pytest.approx(0.2) and config["weight_decay"] == pytest.approx(5e-4)
