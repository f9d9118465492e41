"""The one exception type that means "the user gave a bad value".

Validators raise `UsageError` with a message naming the value received and
what was expected (using the flag name when the value came from a flag). The
command-line entry points catch `UsageError` alone and turn it into one line
on stderr with exit code 2; any other exception is a bug and keeps its
traceback.
"""


class UsageError(ValueError):
    """Bad user input: a setting, a path, a data set or a flag value."""
