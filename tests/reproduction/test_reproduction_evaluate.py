"""The per-model evaluation cache: which part settings decide reuse."""

import json
import types

import numpy as np

from atalp_keras.reproduction import evaluate, presets


def _keys(s, sources):
    entry = {"name": "pat_seed0", "dir": "unused", "eval_eps": (0.2,), "curve_eps": ()}
    x, y = np.zeros((2, 8, 8, 1), np.float32), np.zeros(2, np.int32)
    parts = evaluate._parts(s, entry, x, y, sources, types.SimpleNamespace(num_classes=10),
                            None, {})
    return {k: json.dumps(key, sort_keys=True, default=str) for k, (key, _) in parts.items()}


def test_a_transfer_curve_from_another_source_is_not_reused():
    s = presets.resolve("digits", quick=True)
    trained = _keys(s, {"gray": ("pat_gray_seed100", "g"), "black": ("pat_black_x", "b")})
    from_seed = _keys(s, {"gray": ("pat_seed1", "g1"), "black": ("pat_black_x", "b")})
    assert trained["iterations:gray"] != from_seed["iterations:gray"]
    assert trained["iterations:black"] == from_seed["iterations:black"]
    # The white-box curve and the attacks keep their keys (cached results stay valid).
    assert {k: v for k, v in trained.items() if k not in ("iterations:gray", "iterations:black")} \
        == _keys(s, {})
