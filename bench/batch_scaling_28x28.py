"""Training pass, input-gradient pass and weight-gradient pass of the fmnist
backbone at batch 64, 128 and 256 (is the doubled batch of the paired presets
more than twice the work?), round-robin in one process.

    KERAS_BACKEND=tensorflow TF_CPP_MIN_LOG_LEVEL=2 PYTHONPATH=. ROUNDS=15 \
        python bench/batch_scaling_28x28.py
"""
import os, sys, time, statistics
os.environ.setdefault("KERAS_BACKEND", "tensorflow"); os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras, numpy as np, tensorflow as tf
from keras import ops
from atalp_keras import losses
from atalp_keras.backbones.registry import build_backbone
keras.utils.set_random_seed(0)
c = build_backbone("fmnist", (28,28,1), 10); opt = keras.optimizers.SGD(0.05, momentum=0.9); v = c.trainable_variables
rng = np.random.default_rng(0)
X = {b: (tf.constant(rng.uniform(size=(b, 28, 28, 1)).astype("float32")), tf.constant(rng.integers(0, 10, b).astype("int32"))) for b in (64, 128, 256)}
@tf.function(reduce_retracing=False)
def tr(a, b):
    with tf.GradientTape() as t:
        l = ops.mean(losses.cross_entropy(b, c(a, training=True)))
    opt.apply(t.gradient(l, v), v); return l
@tf.function
def gr(a, b):
    with tf.GradientTape() as t:
        t.watch(a); l = ops.sum(losses.cross_entropy(b, c(a, training=False)))
    return t.gradient(l, a)
@tf.function
def trinf(a, b):  # weight grads with BN in inference mode
    with tf.GradientTape() as t:
        l = ops.mean(losses.cross_entropy(b, c(a, training=False)))
    return t.gradient(l, v)
F = {}
for bs in (64, 128, 256):
    F[f"train_{bs}"] = (lambda bs=bs: tr(*X[bs]))
    F[f"grad_{bs}"] = (lambda bs=bs: gr(*X[bs]))
    F[f"wgrad_inf_{bs}"] = (lambda bs=bs: trinf(*X[bs]))
for n in F:
    for _ in range(2): tf.nest.flatten(F[n]())[0].numpy()
T = {n: [] for n in F}; C = {n: [] for n in F}
for r in range(int(os.environ.get("ROUNDS", 20))):
    for n in F:
        t = time.perf_counter(); p0 = time.process_time(); tf.nest.flatten(F[n]())[0].numpy(); T[n].append(time.perf_counter() - t); C[n].append(time.process_time() - p0)
for n in F:
    print(f"{n:16s} median {1e3*statistics.median(T[n]):8.1f} ms  min {1e3*min(T[n]):8.1f}  cpu median {1e3*statistics.median(C[n]):8.1f}", flush=True)
