"""experiments/reproduce.py run as a user runs it: a fresh Python process on
TensorFlow. Shared by the reproduction's end-to-end tests."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "experiments", "reproduce.py")


def run_reproduce(args, cwd):
    """``python experiments/reproduce.py <args>`` in ``cwd``: the finished
    process (its output captured as text)."""
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, SCRIPT] + args, cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=1800)
