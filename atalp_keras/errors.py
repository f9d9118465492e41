"""The one exception type for bad user input."""


class UsageError(ValueError):
    """A value given by the user is wrong; the message names it and what was expected.

    Command-line entry points catch this (and only this) and print its message on
    one line; any other exception is a bug and keeps its traceback.
    """
