"""``analyze.py`` / ``atalp-analyze``: the paper's analyses, one subcommand each.

    analyze.py attention   --models=runs/digits_standard,runs/digits_at_alp \\
        --num_images=4 --eps=0.2 --out=DIR
    analyze.py iterations  --model=runs/digits_at_alp \\
        --source_models=runs/digits_at_alp_s1,runs/digits_cnn_standard \\
        --source_labels=gray,black --eps=0.25,0.5 --iterations=10,20,50,100,200 --out=DIR
    analyze.py landscape   --models=runs/a,runs/b --num_images=16 --out=DIR
    analyze.py key_regions --models=runs/a,runs/b --images=DIR --masks=DIR [--eps=0.25] --out=DIR

``attention`` draws Figures 1/4 (attention maps of clean and adversarial
images per stage), ``iterations`` Figure 3 (accuracy against PGD-k, gray/black
box), ``landscape`` Figure 6 (loss surfaces) and ``key_regions`` Table 3 (mean
attention inside annotated key regions; with --eps also on PGD images).

A model is a training run folder, a ``.keras`` file or (landscape, iterations)
a SavedModel. The test images are those of the run's model card (dataset,
split seed, image size); ``--seed`` seeds the attack only. Each run also
writes ``flags.txt`` (replay with ``--flagfile``) and ``git_commit.txt`` into
``--out``. Bad input prints one line on stderr and exits with status 2.
"""

import os
import sys
import time

from absl import flags

from atalp_keras.cli import common
from atalp_keras.errors import UsageError

PROGRAM = "analyze.py"
COMMANDS = ("attention", "iterations", "landscape", "key_regions")
RUN_INFO_COMMIT = "git_commit.txt"


def define_flags(flag_values=flags.FLAGS):
    """Defines the flags of every subcommand's settings (a flag shared by
    several subcommands once). Returns their names."""
    from atalp_keras.analysis.settings import SETTINGS

    defined = []
    for settings_type in SETTINGS.values():
        defined += common.define_flags(settings_type, exclude=defined,
                                       flag_values=flag_values)
    return defined


def _progress(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _make_out_dir(out):
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as error:
        raise UsageError(f"--out={out}: cannot create the folder ({error.strerror}).") from None
    if not os.access(out, os.W_OK):
        raise UsageError(f"--out={out}: the folder is not writable.")


def _write_run_info(out, command, flag_values):
    """A replayable flagfile of the subcommand's flags and the git commit."""
    from atalp_keras import artifacts
    from atalp_keras.analysis.settings import SETTINGS

    names = [f.name for f in common.flag_fields(SETTINGS[command])]
    artifacts.atomic_write_text(
        os.path.join(out, artifacts.FLAGS_FILE),
        f"# python analyze.py {command} --flagfile={artifacts.FLAGS_FILE}\n"
        + common.flags_to_text(flag_values, names))
    artifacts.atomic_write_text(os.path.join(out, RUN_INFO_COMMIT),
                                artifacts.git_commit() + "\n")


def command_main(argv, flag_values=flags.FLAGS):
    """Runs the subcommand ``argv[1]`` with the parsed ``flag_values``.

    Raises:
        UsageError: For a missing or unknown subcommand and any bad setting.
    """
    from atalp_keras.analysis.runs import RUNNERS
    from atalp_keras.analysis.settings import SETTINGS

    positional = list(argv[1:])
    if len(positional) != 1 or positional[0] not in COMMANDS:
        got = " ".join(positional) if positional else "nothing"
        raise UsageError(
            f"expected one subcommand, one of {', '.join(COMMANDS)}. Received: {got}")
    command = positional[0]
    settings = common.dataclass_from_flags(SETTINGS[command], flag_values)
    _make_out_dir(settings.out)
    result = RUNNERS[command](settings, settings.out, progress=_progress)
    _write_run_info(settings.out, command, flag_values)
    sys.stdout.write(result.summary)
    for path in result.paths:
        print(f"wrote {path}")


def execute(argv, flag_values):
    """Parses ``argv`` into ``flag_values`` and runs it inside the error
    boundary, without absl's ``app.run`` (for tests and other drivers)."""
    argv = common.parse_flags(argv, flag_values, PROGRAM)
    return common.main_boundary(
        lambda args: command_main(args, flag_values), PROGRAM)(argv)


def main():
    """The console entry point: TensorFlow quieted before it is imported."""
    common.quiet_tensorflow()
    define_flags()
    common.run(command_main, program=PROGRAM, quiet=False)
