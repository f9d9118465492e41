"""train.py's --mixed_precision=mixed_float16 and --devices in real runs
(issue 24 audit: both were only parsed, never trained with)."""

import subprocess

import keras
import numpy as np

import atalp_keras.model  # noqa: F401  (registers ATALPModel for load_model)
from train_runs import TINY, env, quick, read_json, run_train, script


def test_mixed_float16_trains_a_step_with_float32_variables_and_float16_compute(tmp_path):
    result = run_train(quick(tmp_path, "fp16", "--mixed_precision=mixed_float16",
                             "--noexport", "--eval_pgd_steps=0"))
    assert keras.mixed_precision.global_policy().name == "float32"  # Restored after the run.
    (row,) = result["history"]
    assert np.isfinite(row["loss"]) and np.isfinite(row["ce_adv"])
    model = keras.models.load_model(tmp_path / "fp16" / "model.keras")
    # Dynamic loss scaling wraps the optimizer (the float16 recipe).
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    classifier = model.classifier
    conv = classifier.get_layer("conv1_conv")
    assert conv.dtype_policy.name == "mixed_float16"
    assert (conv.compute_dtype, conv.variable_dtype) == ("float16", "float32")
    assert {v.dtype for v in classifier.trainable_variables} == {"float32"}
    # float16 inside, float32 logits out (the logits layer is float32).
    assert classifier.get_layer("conv1_conv").output.dtype == "float16"
    assert classifier(np.zeros((1, 8, 8, 1), "float32")).dtype == "float32"
    # Dynamic loss scaling: a step whose float16 gradients overflow is skipped
    # and halves the scale (the first step at 2**15 does here); the others are
    # applied and counted. So applied + halvings = the epoch's steps, and at
    # least one step updated the weights.
    optimizer, steps = model.optimizer, result["training"]["steps_per_epoch"]
    halvings = np.log2(optimizer.initial_scale / float(optimizer.dynamic_scale))
    assert halvings == int(halvings) >= 0
    assert int(optimizer.iterations) >= 1
    assert int(optimizer.iterations) + int(halvings) == steps


def _mirrored_run(tmp_path, name, devices):
    proc = subprocess.run(
        script("train.py") + TINY + [
            "--num_cpu_devices=2", "--distribution=mirrored", f"--devices={devices}",
            "--max_train_examples=16", "--max_test_examples=8", "--epochs=1",
            "--batch_size=8", "--steps_per_epoch=1", "--num_steps=1", "--eval_pgd_steps=0",
            "--eps=0.2", "--noexport", f"--model_dir={tmp_path / name}"],
        env=env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return read_json(tmp_path / name / "metrics.json")["training"], read_json(
        tmp_path / name / "metrics.json")["history"]


def test_devices_choose_the_mirrored_replicas(tmp_path):
    # One MirroredStrategy per process (ENVIRONMENT.md): each run is a subprocess.
    training, history = _mirrored_run(tmp_path, "both", "/cpu:0,/cpu:1")
    assert (training["strategy"], training["replicas"]) == ("MirroredStrategy", 2)
    assert [d.split("device:")[-1] for d in training["devices"]] == ["CPU:0", "CPU:1"]
    assert np.isfinite(history[0]["loss"])

    # One named device of the two: one replica there, not every CPU device.
    training, history = _mirrored_run(tmp_path, "second", "/cpu:1")
    assert (training["strategy"], training["replicas"]) == ("MirroredStrategy", 1)
    assert [d.split("device:")[-1] for d in training["devices"]] == ["CPU:1"]
    assert np.isfinite(history[0]["loss"])
