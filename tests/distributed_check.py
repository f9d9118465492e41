"""Run as a script (one MirroredStrategy per process): compares one train step
of ATALPModel on a 2-replica MirroredStrategy over two logical CPUs with the
same step on one device, for the same global batch. Prints JSON."""

import json
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

import atalp_keras as ak  # noqa: E402


def build(method, weights=None):
    # "<preset>+awp": the preset with adversarial weight perturbation.
    method, _, extra = method.partition("+")
    awp_gamma = 0.01 if extra == "awp" else 0.0
    keras.utils.set_random_seed(0)
    classifier = ak.tiny_resnet((8, 8, 1), 10, widths=(4, 8, 8, 16), synchronized_bn=True,
                                weight_decay=1e-3)
    if weights is not None:
        classifier.set_weights(weights)
    model = ak.ATALPModel(classifier)
    attack = ak.TRADESAttack(0.2, 0.05, 2, random_start=False) if method == "trades" \
        else ak.PGDAttack(0.2, 0.05, 2, random_start=False)
    model.compile(keras.optimizers.SGD(1.0), method=method, attack=attack, eval_attack=None,
                  awp_gamma=awp_gamma)
    return model


def one_step(model, x, y, sample_weight=None):
    before = [v.numpy().copy() for v in model.classifier.trainable_variables]
    logs = model.train_on_batch(x, y, sample_weight=sample_weight, return_dict=True)
    grads = [b - v.numpy() for b, v in zip(before, model.classifier.trainable_variables)]
    return logs, grads


def main():
    method = sys.argv[1] if len(sys.argv) > 1 else "at_alp"
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(16, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 10, size=16).astype("int32")
    init = build(method).classifier.get_weights()

    # Weights unequal between the replicas' halves (replica 1 gets the heavy ones).
    weights = np.r_[np.linspace(0, 1, 8), np.linspace(1, 3, 8)].astype("float32")
    single = build(method, init)
    logs_single, grads_single = one_step(single, x, y)
    single_w = build(method, init)
    logs_single_w, grads_single_w = one_step(single_w, x, y, weights)

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        mirrored = build(method, init)
        mirrored_w = build(method, init)
    logs_mirrored, grads_mirrored = one_step(mirrored, x, y)
    logs_mirrored_w, grads_mirrored_w = one_step(mirrored_w, x, y, weights)

    # Random start on, under the strategy: it must run and stay finite.
    with strategy.scope():
        model = ak.ATALPModel(ak.tiny_resnet((8, 8, 1), 10, widths=(4, 8, 8, 16)))
        preset, _, extra = method.partition("+")
        model.compile("adam", method=preset, attack=ak.PGDAttack(0.2, 0.05, 2, seed=1),
                      awp_gamma=0.01 if extra == "awp" else 0.0)
    fit_logs = model.fit(x, y, batch_size=8, epochs=1, verbose=0).history

    print(json.dumps({
        "replicas": strategy.num_replicas_in_sync,
        "loss_single": float(logs_single["loss"]),
        "loss_mirrored": float(logs_mirrored["loss"]),
        "max_grad_diff": max(float(np.max(np.abs(a - b)))
                             for a, b in zip(grads_single, grads_mirrored)),
        "max_grad": max(float(np.max(np.abs(a))) for a in grads_single),
        "loss_single_weighted": float(logs_single_w["loss"]),
        "loss_mirrored_weighted": float(logs_mirrored_w["loss"]),
        "max_grad_diff_weighted": max(float(np.max(np.abs(a - b)))
                                      for a, b in zip(grads_single_w, grads_mirrored_w)),
        "max_grad_weighted_vs_unweighted": max(float(np.max(np.abs(a - b)))
                                               for a, b in zip(grads_single_w, grads_single)),
        "fit_loss_finite": bool(np.isfinite(fit_logs["loss"][-1])),
    }))


if __name__ == "__main__":
    main()
