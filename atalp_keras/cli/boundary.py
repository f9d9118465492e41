"""The error boundary of every command: `UsageError` (and a bad flag)
becomes ``<program>: error: <message>`` on one line and exit code 2, spelled
with the command's flag names; ``--help`` prints the project's flags and
exits 0; any other exception is a bug and keeps its traceback.

`atalp_keras.cli.common` re-exports these names.
"""

import ast
import os
import re
import sys

from absl import flags

from atalp_keras.cli import flagfiles
from atalp_keras.errors import UsageError

USAGE_ERROR_EXIT_CODE = 2
HELP_ARGS = ("--help", "-help", "-h", "-?", "--helpshort", "--helpfull")



def one_line(message):
    """Collapses a (possibly multi-line) message into a single line."""
    return " ".join(str(message).split())


def display_name(program):
    """``program``, or the console script's name (``atalp-train``, ...) when
    the command was started as one, so a message names what the user typed."""
    started_as = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return started_as if started_as.startswith("atalp-") else program


def fail(program, message):
    """Prints ``program: error: message`` as one line and exits with code 2."""
    sys.stderr.write(f"{display_name(program)}: error: {one_line(message)}\n")
    sys.stderr.flush()
    raise SystemExit(USAGE_ERROR_EXIT_CODE)


def _program():
    return os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else \
        "atalp"


# Modules whose flags ``--help`` leaves to ``--helpfull``.
_LIBRARY_FLAG_MODULES = ("absl", "tensorflow", "keras", "tf_keras")


def help_text(flag_values, program, full=False):
    """The flags' help: those of this project (``full``: every module's,
    TensorFlow's and absl's as well)."""
    modules = flag_values.flags_by_module_dict()
    shown = [m for m in modules if full or not m.split(".")[0] in
             _LIBRARY_FLAG_MODULES]
    body = "\n\n".join(flag_values.module_help(m) for m in shown)
    return f"{display_name(program)}\n\n{body}\n"


def _flag_error_message(error):
    """absl's message for a flag error, without its ``ERROR::`` prefix; an
    unreadable flagfile named as such."""
    message = one_line(error)
    if message.startswith("ERROR::"):
        message = message[len("ERROR::"):].strip()
    if isinstance(error, flags.CantOpenFlagFileError):
        detail = message.split("Unable to open flagfile:", 1)[-1].strip()
        message = f"Cannot read the flagfile: {detail}"
    return message


def parse_flags(argv, flag_values=flags.FLAGS, program=None):
    """Parses ``argv`` into ``flag_values``. ``--help`` prints the flags on
    stdout and exits 0; a bad flag or an unreadable ``--flagfile`` ends the
    program with one line and exit code 2 (absl alone prints two lines and
    exits 1). ``--flagfile`` is read by `flagfiles.expand_argv`: an include
    relative to the file naming it, ``configs/<name>`` from the shipped
    configs when the working folder has no such file. This is the
    ``flags_parser`` given to ``app.run``."""
    program = program or _program()
    if any(arg in HELP_ARGS for arg in argv[1:]):
        sys.stdout.write(help_text(flag_values, program,
                                   full="--helpfull" in argv[1:]))
        raise SystemExit(0)
    try:
        # Includes relative to the including file, shipped configs found
        # wherever the package is (absl reads both from the working folder).
        argv = flagfiles.expand_argv(argv)
    except UsageError as error:
        fail(program, error)
    try:
        return flag_values(argv)
    except flags.Error as error:
        fail(program, _flag_error_message(error))


def flag_spelling(message, names):
    """``message`` with the library's spellings of settings that came from
    the flags ``names`` (``stage_layers=['a', 'b']``, ```stage_layers```)
    turned into the flags' (``--stage_layers=a,b``, ``--stage_layers``)."""
    if not names:
        return str(message)
    pattern = "|".join(sorted((re.escape(n) for n in names), key=len,
                              reverse=True))
    literal = r"'[^']*'|\"[^\"]*\"|\[[^\]]*\]|\([^)]*\)|[^\s,;)]+"
    message = re.sub(rf"(?<![\w`-])({pattern})=({literal})",
                     lambda m: f"--{m.group(1)}={_as_flag(m.group(2))}",
                     str(message))
    return re.sub(rf"`({pattern})`", r"--\1", message)


def _as_flag(text):
    """A Python literal as it is written on the command line."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text.rstrip(".")
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value) or "''"
    if isinstance(value, bool):
        return str(value).lower()
    if value is None or value == "":
        return "''"
    return str(value)


def main_boundary(fn, program=None, flag_names=None):
    """Wraps an entry point's ``main``: a `UsageError` becomes one stderr line
    and exit code 2; every other exception propagates (a bug: traceback).

    ``flag_names`` (a callable returning names) are the command's flags that
    settings come from: the message spells them as flags (`flag_spelling`).
    """

    def wrapped(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UsageError as error:
            names = flag_names() if flag_names else ()
            fail(program or _program(), flag_spelling(error, names))

    wrapped.__name__ = getattr(fn, "__name__", "main")
    wrapped.__doc__ = fn.__doc__
    wrapped.__wrapped__ = fn
    return wrapped
