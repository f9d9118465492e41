"""The PGD-7 loop forms at 28x28 (issue 11, item 2): the package's PGDAttack against
hand-written loops (tf.range while-loop, Python-unrolled; Keras or package CE),
fmnist backbone, batch 128 (B=...), round-robin; JIT=1 compiles all with XLA.

    KERAS_BACKEND=tensorflow TF_CPP_MIN_LOG_LEVEL=2 PYTHONPATH=. JIT=1 ROUNDS=6 \
        python bench/attack_loop_28x28.py
"""
import os, sys, time, statistics
os.environ.setdefault("KERAS_BACKEND", "tensorflow"); os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras, numpy as np, tensorflow as tf
from keras import ops
import atalp_keras as ak
from atalp_keras.attacks.primitives import unrolled_steps
from atalp_keras import losses
from atalp_keras.backbones.registry import build_backbone
JIT = os.environ.get("JIT") == "1"
B = int(os.environ.get("B", 128))
keras.utils.set_random_seed(0)
c = build_backbone("fmnist", (28,28,1), 10)
rng = np.random.default_rng(0)
x = tf.constant(rng.uniform(size=(B, 28, 28, 1)).astype("float32")); y = tf.constant(rng.integers(0, 10, B).astype("int32"))
att = ak.PGDAttack(0.1, 0.025, 7, seed=0)
def _attack(a, b):
    with unrolled_steps(True):  # as in train_step
        return att(c, a, b)
ours = tf.function(_attack, jit_compile=JIT)
sg = keras.random.SeedGenerator(0)
ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
eps, step = 0.1, 0.025
def mk(loss_kind, loop_kind):
    @tf.function(jit_compile=JIT)
    def f(x, y):
        noise = keras.random.uniform(tf.shape(x), -eps, eps, seed=sg)
        xa = tf.clip_by_value(x + noise, 0.0, 1.0)
        def one(xa):
            with tf.GradientTape() as tape:
                tape.watch(xa)
                lg = c(xa, training=False)
                loss = ce(y, lg) if loss_kind == "keras" else ops.sum(losses.cross_entropy(y, lg))
            xa = xa + step * tf.sign(tape.gradient(loss, xa))
            return tf.clip_by_value(tf.clip_by_value(xa, x - eps, x + eps), 0.0, 1.0)
        if loop_kind == "range":
            for _ in tf.range(7):
                xa = one(xa)
        else:
            for _ in range(7):
                xa = one(xa)
        return xa
    return f
F = {"ours": lambda: ours(x, y), "ref_keras_range": (lambda f=mk("keras", "range"): f(x, y)),
     "ref_ource_range": (lambda f=mk("ours", "range"): f(x, y)), "ref_keras_unrolled": (lambda f=mk("keras", "py"): f(x, y))}
for n in F:
    for _ in range(2): F[n]().numpy()
T = {n: [] for n in F}; C = {n: [] for n in F}
for r in range(int(os.environ.get("ROUNDS", 20))):
    for n in F:
        t = time.perf_counter(); p0 = time.process_time(); F[n]().numpy(); T[n].append(time.perf_counter() - t); C[n].append(time.process_time() - p0)
for n in F:
    print(f"{n:20s} median {1e3*statistics.median(T[n]):8.1f} ms  min {1e3*min(T[n]):8.1f}  cpu median {1e3*statistics.median(C[n]):8.1f}", flush=True)
