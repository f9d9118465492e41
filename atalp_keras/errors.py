"""The one exception type for mistakes in user input.

Validators raise `UsageError` with one line naming the value received and what
was expected; command-line entry points catch it (and only it) to print that
line and exit with status 2. Anything else is a bug and keeps its traceback.
"""


class UsageError(ValueError):
    """Bad user input: a flag, an argument, a file or data the user supplied."""
