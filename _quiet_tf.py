"""Imports TensorFlow without its import-time notices, for the entry points.

TF 2.21 logs a oneDNN notice at import whatever TF_CPP_MIN_LOG_LEVEL says.
Bad input must cost exactly one stderr line, so the entry points import
TensorFlow through `import_tensorflow_quietly` before anything else does.
Kept outside the package: importing ``atalp_keras`` imports TensorFlow.
"""

import os
import sys
import tempfile

_IMPORT_NOISE = ("oneDNN custom operations are on",
                 "All log messages before absl::InitializeLog()")


def import_tensorflow_quietly():
    """TF 2.21 logs a oneDNN notice at import whatever TF_CPP_MIN_LOG_LEVEL
    says. Drop that notice (only it), so bad input costs one stderr line."""
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0") in ("", "0"):
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
