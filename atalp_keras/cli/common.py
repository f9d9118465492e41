"""What every command-line entry point shares.

- `quiet_tensorflow`: imports TensorFlow without its import-time notices
  (callable before anything imports TensorFlow; ``import atalp_keras`` does
  not).
- `define_flags` / `dataclass_from_flags`: absl flags generated from a config
  dataclass, one flag per field whose ``metadata`` holds ``help`` (and
  optionally ``choices``, ``lower_bound``, ``upper_bound``, ``parser``), so a
  setting is declared once, in its dataclass.
- `main_boundary` / `run`: the error boundary (`atalp_keras.cli.boundary`,
  re-exported here). `UsageError` (and a bad flag)
  becomes ``<program>: error: <message>`` on one line and exit code 2;
  ``--help`` prints the flags and exits 0; any other exception is a bug and
  keeps its traceback.
- Value parsers: `parse_fraction`, `parse_eps`, `parse_image_size` live in
  `atalp_keras.parsing` (the settings use them too) and are re-exported here.

Nothing here reads a flag's value outside `dataclass_from_flags`.
"""

import dataclasses
import logging
import math
import os
import sys
import tempfile
import typing

from absl import flags

from atalp_keras.cli.boundary import (  # noqa: F401  (re-exported)
    HELP_ARGS, USAGE_ERROR_EXIT_CODE, _program, fail, flag_spelling, help_text,
    main_boundary, one_line, parse_flags)
from atalp_keras.errors import UsageError
from atalp_keras.parsing import (  # noqa: F401  (re-exported)
    parse_eps, parse_fraction, parse_image_size)

_IMPORT_NOISE = ("oneDNN custom operations are on",
                 "All log messages before absl::InitializeLog()")


# ------------------------------------------------------------ TensorFlow


def import_tensorflow_quietly():
    """TF 2.21 logs a oneDNN notice at import whatever TF_CPP_MIN_LOG_LEVEL
    says. Drop that notice (only it), so bad input costs one stderr line."""
    if "tensorflow" in sys.modules or os.environ.get(
            "TF_CPP_MIN_LOG_LEVEL", "0") in ("", "0"):
        import tensorflow  # noqa: F401
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture.read().decode(errors="replace").splitlines(
                    keepends=True):
                if not any(noise in line for noise in _IMPORT_NOISE):
                    sys.stderr.write(line)


class _LibraryInfoFilter(logging.Filter):
    """Drops INFO (and DEBUG) records that TensorFlow or Keras log through
    absl (``signature_serialization``, ``Sharding callback``, ``Writing
    fingerprint`` on every SavedModel write) while absl's verbosity is the
    default; the package's own INFO lines and every warning stay."""

    _SOURCES = tuple(os.sep + name + os.sep
                     for name in ("tensorflow", "keras", "tf_keras"))

    def filter(self, record):
        from absl import logging as absl_logging

        if record.levelno >= logging.WARNING or \
                absl_logging.get_verbosity() > absl_logging.INFO:
            return True
        return not any(source in record.pathname for source in self._SOURCES)


def quiet_tensorflow_logs():
    """TensorFlow's own INFO lines (SavedModel writer) and retracing warnings
    (one per attack object) drown the run's output; keep its errors only."""
    from absl import logging as absl_logging

    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    handler = absl_logging.get_absl_handler()
    if not any(isinstance(f, _LibraryInfoFilter) for f in handler.filters):
        handler.addFilter(_LibraryInfoFilter())


def quiet_tensorflow():
    """Selects the TensorFlow backend, imports TensorFlow without its import
    notices and keeps only its error logs. Call it first in an entry point."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import_tensorflow_quietly()
    quiet_tensorflow_logs()


# ---------------------------------------------------------------- values


class ValueParser(flags.ArgumentParser):
    """An absl parser around ``parse(text, name) -> value``; a `UsageError`
    from it becomes a flag error (one line, exit 2)."""

    def __init__(self, parse, name, syntactic_help=""):
        self._parse, self.name = parse, name
        self.syntactic_help = syntactic_help

    def parse(self, argument):
        if not isinstance(argument, str):
            return argument
        try:
            return self._parse(argument, self.name)
        except UsageError as error:
            raise ValueError(str(error)) from None

    def flag_type(self):
        return getattr(self._parse, "__name__", "value").replace("parse_", "")


class EpsParser(ValueParser):
    """Flag parser for a perturbation size on the [0, 1] pixel scale."""

    def __init__(self, name="eps"):
        super().__init__(parse_eps, name, "a number in (0, 1], decimal or a "
                         "fraction such as 8/255")


class ItemListParser(flags.ArgumentParser):
    """Flag parser for ``a,b,c``: a tuple of ``convert(item)``."""

    def __init__(self, convert, name, syntactic_help="comma-separated list"):
        self.convert, self.name = convert, name
        self.syntactic_help = syntactic_help

    def parse(self, argument):
        if isinstance(argument, (list, tuple)):
            items = list(argument)
        else:
            items = [s.strip() for s in str(argument).split(",") if s.strip()]
        try:
            return tuple(self.convert(item) for item in items)
        except UsageError as error:
            raise ValueError(str(error)) from None
        except (ValueError, TypeError):
            raise ValueError(
                f"`{self.name}` must be comma-separated "
                f"{getattr(self.convert, '__name__', 'value')} values. "
                f"Received: {self.name}={argument!r}") from None

    def flag_type(self):
        return "list"


class EpsListParser(ItemListParser):
    """Flag parser for a comma-separated list of perturbation sizes."""

    def __init__(self, name="eps"):
        super().__init__(lambda item: parse_eps(item, name), name,
                         "comma-separated numbers in (0, 1], e.g. 2/255,8/255")

    def parse(self, argument):
        return list(super().parse(argument))


class ListSerializer(flags.ArgumentSerializer):
    """Serialises a list of numbers as ``a,b,c`` (``repr`` keeps floats exact)."""

    def serialize(self, value):
        return ",".join(repr(v) if isinstance(v, float) else str(v)
                        for v in value)


# ----------------------------------------------------------------- flags


def _field_type(field):
    """``(base type, optional)`` of a dataclass field (``Optional[X]`` -> X)."""
    kind = field.type
    args = typing.get_args(kind)
    if typing.get_origin(kind) is typing.Union and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (typing.get_origin(rest[0]) or rest[0]), True
    return (typing.get_origin(kind) or kind), False


def _item_type(field):
    """Element type of a ``tuple`` field: ``metadata["item"]`` or str."""
    return field.metadata.get("item", str)


def flag_fields(dataclass_type, exclude=()):
    """The fields of ``dataclass_type`` that are flags (they have help)."""
    return [f for f in dataclasses.fields(dataclass_type)
            if "help" in f.metadata and f.name not in exclude]


def define_flags(dataclass_type, exclude=(), flag_values=flags.FLAGS):
    """Defines one absl flag per help-carrying field of ``dataclass_type``.

    The flag has the field's name, default and help. Its kind follows the
    metadata and the field type: ``parser`` (``parse(text, name)``) ->
    a custom flag; ``choices`` -> enum; bool/int/float/str -> the absl flag of
    that type (with ``lower_bound``/``upper_bound``); ``tuple`` -> a
    comma-separated list of ``metadata["item"]`` (default str).

    Returns:
        The names of the flags defined, in field order.
    """
    names = []
    for field in flag_fields(dataclass_type, exclude):
        _define_flag(field, flag_values)
        names.append(field.name)
    return names


def _define_flag(field, flag_values):
    meta, name = field.metadata, field.name
    kind, _ = _field_type(field)
    default = field.default
    if default is dataclasses.MISSING:
        default = field.default_factory()
    bounds = {key: meta[key] for key in ("lower_bound", "upper_bound")
              if key in meta}
    common = dict(flag_values=flag_values)
    if "parser" in meta:
        flags.DEFINE(ValueParser(meta["parser"], name), name, default,
                     meta["help"], serializer=_serializer(kind), **common)
    elif "choices" in meta:
        flags.DEFINE_enum(name, default, list(meta["choices"]), meta["help"],
                          **common)
    elif kind is bool:
        flags.DEFINE_boolean(name, default, meta["help"], **common)
    elif kind is int:
        flags.DEFINE_integer(name, default, meta["help"], **bounds, **common)
    elif kind is float:
        flags.DEFINE_float(name, default, meta["help"], **bounds, **common)
    elif kind in (tuple, list):
        item = _item_type(field)
        flags.DEFINE(ItemListParser(item, name, f"comma-separated "
                                    f"{item.__name__} values"), name,
                     default, meta["help"], serializer=ListSerializer(),
                     **common)
    else:
        flags.DEFINE_string(name, default, meta["help"], **common)


def _serializer(kind):
    return ListSerializer() if kind in (tuple, list) else \
        flags.ArgumentSerializer()


def dataclass_from_flags(cls, flag_values=flags.FLAGS, exclude=(), **extra):
    """``cls(**values)`` from the parsed flags of `define_flags` (plus
    ``extra`` keyword values for fields that are not flags)."""
    values = {f.name: flag_values[f.name].value
              for f in flag_fields(cls, exclude)}
    for field in flag_fields(cls, exclude):
        if isinstance(values[field.name], list):
            values[field.name] = tuple(values[field.name])
    values.update(extra)
    return cls(**values)


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


# -------------------------------------------------------- error boundary


def require_tensorflow_backend(program):
    """Stops a command line with one line (exit 2) when ``KERAS_BACKEND``
    names another backend: the commands are built on TensorFlow (tf.data
    pipelines, tf.distribute, SavedModel export); the library runs on JAX.
    Checked before TensorFlow is imported, which a JAX machine may lack."""
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    if backend != "tensorflow":
        fail(program, f"The command lines run on Keras' TensorFlow backend (tf.data input, "
                      f"tf.distribute, SavedModel export). Received: KERAS_BACKEND={backend}. "
                      "Unset it to run this command; under JAX, train and attack through the "
                      "library (README, 'On JAX').")


def run(main, program=None, flag_values=flags.FLAGS, quiet=True):
    """Runs ``main(argv)`` as a program with absl: TensorFlow quieted first
    (``quiet``), flags parsed by `parse_flags`, ``main`` inside
    `main_boundary`. Any backend but TensorFlow is refused first
    (`require_tensorflow_backend`)."""
    from absl import app

    require_tensorflow_backend(program or _program())
    if quiet:
        quiet_tensorflow()
    program = program or _program()
    bounded = main_boundary(main, program)

    def main_status(argv):
        # app.run exits with main's return value: keep an exit code only
        # (a returned result would be printed and exit with 1).
        status = bounded(argv)
        return status if isinstance(status, int) else None

    app.run(main_status,
            flags_parser=lambda argv: parse_flags(argv, flag_values, program))
