"""Helpers shared by the absl entry points (``train.py``, ``evaluate.py``).

Nothing here defines or reads a flag: it parses flag *values* (``8/255``), and
turns bad input into the one-line, exit-code-2 failure the entry points
promise.
"""

import fractions
import logging
import math
import sys

from absl import flags

from atalp_keras.attacks.base import check_eps

USAGE_ERROR_EXIT_CODE = 2


def parse_fraction(text, name="value"):
    """``"8/255"``, ``"0.0314"`` or ``"3e-2"`` -> float.

    Raises:
        ValueError: If ``text`` is neither a decimal number nor ``a/b``.
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    text = str(text).strip()
    try:
        if "/" in text:
            numerator, denominator = text.split("/", 1)
            value = fractions.Fraction(numerator.strip()) / fractions.Fraction(
                denominator.strip())
            return float(value)
        return float(text)
    except (ValueError, ZeroDivisionError):
        raise ValueError(
            f"`{name}` must be a decimal number or a fraction such as 8/255. "
            f"Received: {name}={text!r}"
        ) from None


def parse_eps(text, name="eps"):
    """Parses ``text`` with `parse_fraction` and checks it is in ``(0, 1]``."""
    return check_eps(parse_fraction(text, name), name)


class EpsParser(flags.ArgumentParser):
    """Flag parser for a perturbation size on the [0, 1] pixel scale."""

    syntactic_help = "a number in (0, 1], decimal or a fraction such as 8/255"

    def __init__(self, name="eps"):
        self.name = name

    def parse(self, argument):
        return parse_eps(argument, self.name)

    def flag_type(self):
        return "eps"


class EpsListParser(flags.ArgumentParser):
    """Flag parser for a comma-separated list of perturbation sizes."""

    syntactic_help = "comma-separated numbers in (0, 1], e.g. 2/255,8/255,0.1"

    def __init__(self, name="eps"):
        self.name = name

    def parse(self, argument):
        if isinstance(argument, (list, tuple)):
            items = list(argument)
        else:
            items = [s for s in str(argument).split(",") if s.strip()]
        return [parse_eps(item, self.name) for item in items]

    def flag_type(self):
        return "eps list"


class ListSerializer(flags.ArgumentSerializer):
    """Serialises a list of numbers as ``a,b,c`` (``repr`` keeps floats exact)."""

    def serialize(self, value):
        return ",".join(repr(v) if isinstance(v, float) else str(v)
                        for v in value)


def quiet_tensorflow_logs():
    """TensorFlow's own INFO lines (SavedModel writer) and retracing warnings
    (one per attack object) drown the run's output; keep its errors only."""
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def one_line(message):
    """Collapses a (possibly multi-line) message into a single line."""
    return " ".join(str(message).split())


def fail(program, message):
    """Prints ``program: error: message`` as one line and exits with code 2."""
    sys.stderr.write(f"{program}: error: {one_line(message)}\n")
    sys.stderr.flush()
    raise SystemExit(USAGE_ERROR_EXIT_CODE)


def parse_flags(argv, flag_values, program):
    """Parses ``argv`` into ``flag_values``; a bad flag or an unreadable
    ``--flagfile`` ends the program with one line and exit code 2.

    absl's own parser prints two lines and exits with 1; this is the
    ``flags_parser`` given to ``app.run``.
    """
    try:
        return flag_values(argv)
    except flags.Error as error:
        fail(program, error)


def flags_to_text(flag_values, names):
    """A replayable flagfile body: one ``--name=value`` line per set flag."""
    lines = []
    for name in names:
        flag = flag_values[name]
        if flag.value is None:
            continue
        if isinstance(flag.value, float) and not math.isfinite(flag.value):
            continue
        text = flag.serialize()
        if text:
            lines.append(text)
    return "\n".join(lines) + "\n"
