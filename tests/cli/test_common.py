"""atalp_keras.cli.common: flags generated from a dataclass, the error
boundary, --help, and an `import atalp_keras` that leaves TensorFlow alone."""

import dataclasses
import os
import subprocess
import sys
import textwrap
from typing import Optional

import pytest
from absl import flags

from atalp_keras.cli import common
from atalp_keras.errors import UsageError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclasses.dataclass
class Toy:
    name: str = dataclasses.field(default="a", metadata={"help": "A name."})
    kind: str = dataclasses.field(
        default="x", metadata={"help": "A kind.", "choices": ("x", "y")})
    count: int = dataclasses.field(
        default=3, metadata={"help": "A count.", "lower_bound": 1})
    rate: float = dataclasses.field(
        default=0.5, metadata={"help": "A rate.", "lower_bound": 0.0,
                               "upper_bound": 1.0})
    on: bool = dataclasses.field(default=False, metadata={"help": "A switch."})
    eps: float = dataclasses.field(
        default=0.25, metadata={"help": "A radius.", "parser": common.parse_eps})
    size: Optional[tuple] = dataclasses.field(
        default=None, metadata={"help": "A size.",
                                "parser": common.parse_image_size})
    widths: tuple = dataclasses.field(
        default=(1, 2), metadata={"help": "Widths.", "item": int})
    note: Optional[str] = None  # No help: not a flag.


def parse(argv):
    fv = flags.FlagValues()
    names = common.define_flags(Toy, flag_values=fv)
    common.parse_flags(["toy"] + argv, fv, "toy")
    return fv, names


def test_flags_from_a_dataclass():
    fv, names = parse([])
    assert names == ["name", "kind", "count", "rate", "on", "eps", "size", "widths"]
    assert fv["count"].help == "A count."
    assert common.dataclass_from_flags(Toy, fv) == Toy()

    fv, _ = parse(["--name=b", "--kind=y", "--count=7", "--rate=1", "--on",
                   "--eps=8/255", "--size=32", "--widths=4,5,6"])
    toy = common.dataclass_from_flags(Toy, fv, note="kept")
    assert toy == Toy(name="b", kind="y", count=7, rate=1.0, on=True,
                      eps=pytest.approx(8 / 255), size=(32, 32),
                      widths=(4, 5, 6), note="kept")
    # The generated flags serialise to a flagfile that replays the same values.
    text = common.flags_to_text(fv, names)
    replay = flags.FlagValues()
    common.define_flags(Toy, flag_values=replay)
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"toy-{os.getpid()}.flags")
    with open(path, "w") as handle:
        handle.write(text)
    replay(["toy", f"--flagfile={path}"])
    os.remove(path)
    assert common.dataclass_from_flags(Toy, replay, note="kept") == toy


@pytest.mark.parametrize("argv, fragment", [
    (["--kind=z"], "kind"),
    (["--count=0"], "count"),
    (["--rate=2"], "rate"),
    (["--eps=8"], "0-255 scale"),
    (["--eps=1/0"], "fraction such as 8/255"),
    (["--size=3,4,5"], "`size` must be one or two positive integers"),
    (["--widths=4,x"], "widths"),
    (["--nme=b"], "nme"),
])
def test_bad_flag_is_one_line_exit_2(argv, fragment, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("toy: error: ") and fragment in err[0]


def test_exclude_leaves_a_field_out():
    fv = flags.FlagValues()
    assert "count" not in common.define_flags(Toy, exclude=("count",), flag_values=fv)
    assert "count" not in fv


def test_boundary_turns_usage_error_into_one_line_exit_2(capsys):
    def main(argv):
        raise UsageError("`eps` must be in (0, 1].\nReceived: eps=8")

    with pytest.raises(SystemExit) as exit_info:
        common.main_boundary(main, "prog")(["prog"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "prog: error: `eps` must be in (0, 1]. Received: eps=8\n"


def test_messages_name_the_console_script_the_user_ran(monkeypatch, capsys):
    def main(argv):
        raise UsageError("bad")

    monkeypatch.setattr(sys, "argv", ["/venv/bin/atalp-evaluate", "--eps=8"])
    with pytest.raises(SystemExit):
        common.main_boundary(main, "evaluate.py")(sys.argv)
    assert capsys.readouterr().err == "atalp-evaluate: error: bad\n"
    monkeypatch.setattr(sys, "argv", ["evaluate.py", "--eps=8"])
    with pytest.raises(SystemExit):
        common.main_boundary(main, "evaluate.py")(sys.argv)
    assert capsys.readouterr().err == "evaluate.py: error: bad\n"


def test_boundary_keeps_bugs_as_exceptions():
    def main(argv):
        raise ValueError("a bug, not bad input")

    # A plain ValueError is not user input: it propagates (with its traceback).
    with pytest.raises(ValueError, match="a bug"):
        common.main_boundary(main, "prog")(["prog"])


def test_parsers():
    assert common.parse_fraction(" 64 / 256 ") == 0.25
    assert common.parse_image_size("28") == (28, 28)
    assert common.parse_image_size((28, 30)) == (28, 30)
    assert common.parse_image_size("") is None and common.parse_image_size(None) is None
    for bad in ("0,4", "a", (1, 2, 3), 2.5):
        with pytest.raises(UsageError, match="image_size"):
            common.parse_image_size(bad)
    with pytest.raises(UsageError, match="0-255 scale"):
        common.parse_eps("8")


def _python(code, *args):
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2",
               KERAS_BACKEND="tensorflow")
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args],
                          capture_output=True, text=True, env=env, timeout=120)


def test_import_atalp_keras_does_not_import_tensorflow():
    proc = _python("""
        import sys
        import atalp_keras, atalp_keras.artifacts, atalp_keras.cli, atalp_keras.errors
        assert "tensorflow" not in sys.modules and "keras" not in sys.modules
        assert atalp_keras.PGDAttack  # A public name loads on use.
        assert "tensorflow" in sys.modules
        """)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_help_exits_0_and_lists_the_generated_flags():
    proc = _python("""
        import dataclasses, sys
        sys.path.insert(0, sys.argv[1])
        from absl import flags
        from atalp_keras.cli import common
        from test_common import Toy

        common.define_flags(Toy)
        common.run(lambda argv: print("MAIN RAN"), program="toy", quiet=False)
        """, os.path.dirname(os.path.abspath(__file__)), "--help")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "--count" in proc.stdout and "A rate." in proc.stdout
    assert "MAIN RAN" not in proc.stdout


def test_run_exits_0_when_main_returns_a_result():
    """app.run exits with main's return value; a result dict is not a status."""
    proc = _python("""
        from atalp_keras.cli import common
        common.run(lambda argv: {"accuracy": 1.0}, program="toy", quiet=False)
        """)
    assert (proc.returncode, proc.stderr) == (0, "")


@pytest.mark.parametrize("script", ["train.py", "evaluate.py", "analyze.py",
                                    "experiments/reproduce.py"])
def test_the_command_lines_refuse_another_backend_in_one_line(script):
    """Under KERAS_BACKEND=jax every command stops before importing
    TensorFlow, naming the value and where the JAX path is."""
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    result = subprocess.run([sys.executable, os.path.join(repo, script), "--help"],
                            env=dict(os.environ, KERAS_BACKEND="jax"), cwd=repo,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Received: KERAS_BACKEND=jax" in lines[0], lines
    assert "On JAX" in lines[0]
