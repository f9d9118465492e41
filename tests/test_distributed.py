"""MirroredStrategy over two logical CPUs gives the single-device loss and
gradients for the same global batch, with and without sample weights (run in a subprocess: one strategy per
process)."""

import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


# "+awp": AWP's ascent step must be the global batch's on every replica.
@pytest.mark.parametrize("method", ["at_alp", "trades", "pat+awp", "mart+awp"])
def test_mirrored_step_equals_single_device(method):
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=os.path.dirname(HERE) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, os.path.join(HERE, "distributed_check.py"), method],
                          capture_output=True, text=True, env=env, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    assert abs(result["loss_single"] - result["loss_mirrored"]) < 1e-5
    # SGD(lr=1): the weight change is the gradient. Without the division by
    # replicas in sync this difference equals the largest gradient (checked by hand).
    assert result["max_grad"] > 1e-3
    assert result["max_grad_diff"] < 1e-5
    # sample_weight: sum(w * l) / sum(w) over the global batch on both.
    assert abs(result["loss_single_weighted"] - result["loss_mirrored_weighted"]) < 1e-5
    assert result["max_grad_weighted_vs_unweighted"] > 1e-4
    assert result["max_grad_diff_weighted"] < 1e-5
    assert result["fit_loss_finite"]
