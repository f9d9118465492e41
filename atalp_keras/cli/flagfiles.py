"""``--flagfile`` for the commands: includes relative to the file naming them,
and the shipped configs found wherever the package is installed.

absl reads every ``--flagfile=path``, also one inside a flagfile, relative to
the working directory, so the shipped configs (``digits_at_alp.flags`` layers
on ``digits_base.flags``) worked only from the repository root. `expand_argv`
replaces each directive by the file's flag lines before absl sees the
arguments, finding a relative ``path`` as follows:

- on the command line: relative to the working directory; failing that,
  ``configs/<name>`` is read from the shipped configs (`shipped_configs_dir`);
- inside a flagfile: relative to that file's folder; failing that, relative to
  the working directory (flagfiles written for absl's rule keep working), then
  ``configs/<name>`` from the shipped configs.

File syntax is absl's: one flag per line, ``#`` or ``//`` comment lines, blank
lines ignored. An include cycle is refused (absl skips it with a warning).
"""

import os

from atalp_keras.errors import UsageError

# A relative flagfile path starting with this folder may name a shipped config.
SHIPPED_PREFIX = "configs"
_DIRECTIVES = ("--flagfile=", "-flagfile=")
_SPLIT_DIRECTIVES = ("--flagfile", "-flagfile")


def shipped_configs_dir():
    """The folder holding the shipped ``*.flags`` configs, or None.

    ``atalp_keras/configs/`` in an installed wheel (setup.py ships the
    repository's ``configs/`` there as package data); in a checkout or an
    editable install, the repository's ``configs/`` beside the package.
    """
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    installed = os.path.join(package, SHIPPED_PREFIX)
    if os.path.isdir(installed):
        return installed
    root = os.path.dirname(package)
    checkout = os.path.join(root, SHIPPED_PREFIX)
    # setup.py beside it: this is the project's checkout, not some other
    # "configs" folder in site-packages.
    if os.path.isdir(checkout) and os.path.isfile(os.path.join(root, "setup.py")):
        return checkout
    return None


def _shipped(path):
    """``configs/<name>`` in the shipped configs, or None."""
    parts = os.path.normpath(path).split(os.sep)
    folder = shipped_configs_dir()
    if folder is None or len(parts) < 2 or parts[0] != SHIPPED_PREFIX:
        return None
    candidate = os.path.join(folder, *parts[1:])
    return candidate if os.path.isfile(candidate) else None


def resolve(path, including_file=None):
    """The file a ``--flagfile=path`` names (see the module docstring).

    Raises:
        UsageError: If no such file is found, naming where it was looked for.
    """
    path = os.path.expanduser(path)
    if os.path.isabs(path):
        places = [path]
    else:
        places = [os.path.join(os.path.dirname(os.path.abspath(including_file)), path)] \
            if including_file else []
        places.append(os.path.abspath(path))
    for place in places:
        if os.path.isfile(place):
            return place
    shipped = None if os.path.isabs(path) else _shipped(path)
    if shipped:
        return shipped
    if including_file is None and not os.path.exists(path):
        # The message absl gave for a missing file on the command line.
        raise UsageError(f"Cannot read the flagfile: [Errno 2] No such file or "
                         f"directory: {path!r}")
    if including_file is None:
        raise UsageError(f"Cannot read the flagfile: {path!r} is not a file.")
    looked = [os.path.dirname(places[0]), f"the working directory {os.getcwd()}"]
    if path.split(os.sep)[0] == SHIPPED_PREFIX:
        looked.append(f"the shipped configs {shipped_configs_dir()}")
    raise UsageError(
        f"Cannot read the flagfile {path!r} named in {including_file}: no such file "
        f"in {', '.join(looked[:-1])} or {looked[-1]} (an include is relative to the "
        "file naming it).")


def _file_lines(path, stack):
    """The flag lines of ``path`` with its includes expanded in place."""
    real = os.path.realpath(path)
    if real in stack:
        chain = " -> ".join(stack[stack.index(real):] + [real])
        raise UsageError(f"Cannot read the flagfile {path}: it includes itself "
                         f"({chain}).")
    try:
        with open(path) as handle:
            lines = handle.readlines()
    except OSError as error:
        raise UsageError(f"Cannot read the flagfile: {error}") from None
    out = []
    for line in lines:
        if line.isspace() or line.startswith(("#", "//")):
            continue
        directive = next((d for d in _DIRECTIVES if line.startswith(d)), None)
        if directive is None:
            out.append(line.strip())
            continue
        name = line[len(directive):].strip()
        if name:  # absl ignores an empty one.
            out += _file_lines(resolve(name, including_file=path), stack + [real])
    return out


def expand(args):
    """``args`` (no program name) with each ``--flagfile`` replaced by the
    lines of the file it names, includes expanded; after ``--`` nothing is
    read.

    Raises:
        UsageError: For a flagfile that cannot be found or read, a
            ``--flagfile`` without a value, or an include cycle.
    """
    out, rest = [], list(args)
    while rest:
        arg = rest.pop(0)
        if arg == "--":
            return out + [arg] + rest
        if arg in _SPLIT_DIRECTIVES:
            if not rest:
                raise UsageError("--flagfile needs a file. Received: --flagfile "
                                 "with no value")
            name = rest.pop(0)
        else:
            directive = next((d for d in _DIRECTIVES if arg.startswith(d)), None)
            if directive is None:
                out.append(arg)
                continue
            name = arg[len(directive):].strip()
        if name:
            out += _file_lines(resolve(name), [])
    return out


def expand_argv(argv):
    """`expand` of ``argv[1:]``, the program name kept first."""
    return list(argv[:1]) + expand(argv[1:])
