"""Small helpers shared by the reproduction modules."""

import os
import time

from atalp_keras import artifacts


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def save_json(path, value):
    """Writes ``value`` as JSON (folders created, atomically); returns it as read back."""
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    artifacts.write_json(path, value)
    return artifacts.read_json(path)


def load_json(path):
    return artifacts.read_json(path)


def fmt_eps(eps):
    from atalp_keras.evaluation import format_eps

    return format_eps(float(eps))


def fmt_weight(value):
    return f"{value:g}"


def count(ledger, key, seconds, seconds_key):
    """Adds one ``key`` and ``seconds`` to ``ledger[seconds_key]``."""
    if ledger is not None:
        ledger[key] = ledger.get(key, 0) + 1
        ledger[seconds_key] = ledger.get(seconds_key, 0.0) + float(seconds or 0.0)
