"""Where at_alp's extra time goes at 28x28 (issue 11, item 1): the compiled pieces of
one training step on the fmnist backbone, batch 128, PGD-7 at eps 0.1, timed
round-robin in one process; wall median, wall min and CPU-seconds median.

    KERAS_BACKEND=tensorflow TF_CPP_MIN_LOG_LEVEL=2 PYTHONPATH=. ROUNDS=12 \
        python bench/profile_28x28.py [comma list of pieces]     # JIT=1: all under XLA
"""
import os, sys, time, statistics
os.environ.setdefault("KERAS_BACKEND", "tensorflow"); os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras, numpy as np, tensorflow as tf
from keras import ops
import atalp_keras as ak
from atalp_keras.attacks.primitives import unrolled_steps
from atalp_keras import losses, attention
from atalp_keras.backbones.registry import build_backbone
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from speedlib.reference import reference_pgd_step
B = 128
JIT = os.environ.get("JIT") == "1"
rng = np.random.default_rng(0)
x = tf.constant(rng.uniform(size=(B, 28, 28, 1)).astype("float32")); y = tf.constant(rng.integers(0, 10, B).astype("int32"))
x2 = tf.concat([x, x], 0); y2 = tf.concat([y, y], 0)
def clf():
    keras.utils.set_random_seed(0); return build_backbone("fmnist", (28,28,1), 10)
def pkg(method, **kw):
    m = ak.ATALPModel(clf())
    m.compile(keras.optimizers.SGD(0.05, momentum=0.9), method=method,
              attack=ak.PGDAttack(0.1, 0.025, 7, seed=0), eval_attack=None, jit_compile=JIT, **kw)
    f = tf.function(m.train_step, jit_compile=JIT)
    return lambda: f((x, y))["loss"], m
F = {}
c = clf(); opt = keras.optimizers.SGD(0.05, momentum=0.9); v = c.trainable_variables
m_at = ak.ATALPModel(c); fm = m_at.feature_model
att = ak.PGDAttack(0.1, 0.025, 7, seed=0)
def _attack(a, b):
    with unrolled_steps(True):  # as in train_step
        return att(c, a, b)
fa = tf.function(_attack, jit_compile=JIT); F["attack7"] = lambda: fa(x, y)
ff = tf.function(lambda a: c(a, training=False), jit_compile=JIT); F["fwd_B"] = lambda: ff(x)
@tf.function(jit_compile=JIT)
def tr(a, b):
    with tf.GradientTape() as t:
        l = ops.mean(losses.cross_entropy(b, c(a, training=True)))
    opt.apply(t.gradient(l, v), v); return l
F["train_B"] = lambda: tr(x, y); F["train_2B"] = lambda: tr(x2, y2)
def trf(with_at):
    @tf.function(jit_compile=JIT)
    def f(a, b):
        with tf.GradientTape() as t:
            out = fm(a, training=True)
            ln, la = ops.split(out["logits"], 2, 0)
            l = ops.mean(losses.cross_entropy(b, ln) + losses.cross_entropy(b, la) + 0.5 * losses.alp_loss(ln, la))
            if with_at:
                l = l + ops.mean(attention.stacked_pairing_loss(out["stages"], 2))
        opt.apply(t.gradient(l, v), v); return l
    return f
f1, f2 = trf(False), trf(True)
F["train_2B_feat"] = lambda: f1(x2, y); F["train_2B_feat_at"] = lambda: f2(x2, y)
for name, meth, kw in [("step_pat", "pat", {}), ("step_pat_nc", "pat", dict(clean_metrics=False)),
                       ("step_at_alp", "at_alp", {}), ("step_alp", "alp", {}), ("step_at_alp_at0", "at_alp", dict(at_weight=0.0))]:
    F[name] = pkg(meth, **kw)[0]
rs = reference_pgd_step(clf(), keras.optimizers.SGD(0.05, momentum=0.9), 0.1, 0.025, 7, jit_compile=JIT)
F["step_ref"] = lambda: rs(x, y)
names = [n for n in (sys.argv[1].split(",") if len(sys.argv) > 1 else F)]
for n in names:
    for _ in range(2): tf.nest.flatten(F[n]())[0].numpy()
T = {n: [] for n in names}; C = {n: [] for n in names}
rounds = int(os.environ.get("ROUNDS", 15))
for r in range(rounds):
    for n in names:
        t = time.perf_counter(); p0 = time.process_time(); tf.nest.flatten(F[n]())[0].numpy(); T[n].append(time.perf_counter() - t); C[n].append(time.process_time() - p0)
for n in names:
    print(f"{n:18s} median {1e3*statistics.median(T[n]):8.1f} ms   min {1e3*min(T[n]):8.1f}  cpu median {1e3*statistics.median(C[n]):8.1f} ms", flush=True)
