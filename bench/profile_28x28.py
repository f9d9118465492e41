"""Where at_alp's extra time goes at 28x28 (issue 11, item 1): the compiled pieces of
one training step on the fmnist backbone, batch 128, PGD-7 at eps 0.1, timed
round-robin in one process; wall median, wall min and CPU-seconds median, and
paired per-round ratios of the steps and pieces. Every round goes to ``--out``.

    KERAS_BACKEND=tensorflow TF_CPP_MIN_LOG_LEVEL=2 PYTHONPATH=. \
        python bench/profile_28x28.py --rounds 12 [--pieces a,b,...] [--jit] \
        --out bench/results/profile_28x28.json
"""
import argparse
import os
import statistics
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import ops  # noqa: E402

import atalp_keras as ak  # noqa: E402
from atalp_keras import attention, losses  # noqa: E402
from atalp_keras.attacks.primitives import unrolled_steps  # noqa: E402
from atalp_keras.backbones.registry import build_backbone  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from speedlib import record, timing  # noqa: E402
from speedlib.reference import reference_pgd_step  # noqa: E402

B = 128
PAIRS = [("step_at_alp", "step_pat"), ("step_pat", "step_ref"), ("step_at_alp", "step_ref"),
         ("step_pat_nc", "step_pat"), ("step_alp", "step_at_alp"),
         ("step_at_alp_at0", "step_at_alp"), ("train_2B", "train_B"), ("train_B", "fwd_B"),
         ("train_2B_feat", "train_2B"), ("train_2B_feat_at", "train_2B_feat")]


def clf():
    keras.utils.set_random_seed(0)
    return build_backbone("fmnist", (28, 28, 1), 10)


def pieces(jit):
    """``{piece: zero-argument callable}`` (each its own compiled function)."""
    rng = np.random.default_rng(0)
    x = tf.constant(rng.uniform(size=(B, 28, 28, 1)).astype("float32"))
    y = tf.constant(rng.integers(0, 10, B).astype("int32"))
    x2, y2 = tf.concat([x, x], 0), tf.concat([y, y], 0)

    def pkg(method, **kw):
        m = ak.ATALPModel(clf())
        m.compile(keras.optimizers.SGD(0.05, momentum=0.9), method=method,
                  attack=ak.PGDAttack(0.1, 0.025, 7, seed=0), eval_attack=None,
                  jit_compile=jit, **kw)
        f = tf.function(m.train_step, jit_compile=jit)
        return lambda: f((x, y))["loss"]

    F = {}
    c = clf()
    opt = keras.optimizers.SGD(0.05, momentum=0.9)
    v = c.trainable_variables
    fm = ak.ATALPModel(c).feature_model
    att = ak.PGDAttack(0.1, 0.025, 7, seed=0)

    def attack(a, b):
        with unrolled_steps(True):  # as in train_step
            return att(c, a, b)
    fa = tf.function(attack, jit_compile=jit)
    F["attack7"] = lambda: fa(x, y)
    ff = tf.function(lambda a: c(a, training=False), jit_compile=jit)
    F["fwd_B"] = lambda: ff(x)

    @tf.function(jit_compile=jit)
    def tr(a, b):
        with tf.GradientTape() as t:
            loss = ops.mean(losses.cross_entropy(b, c(a, training=True)))
        opt.apply(t.gradient(loss, v), v)
        return loss
    F["train_B"] = lambda: tr(x, y)
    F["train_2B"] = lambda: tr(x2, y2)

    def trf(with_at):
        @tf.function(jit_compile=jit)
        def f(a, b):
            with tf.GradientTape() as t:
                out = fm(a, training=True)
                ln, la = ops.split(out["logits"], 2, 0)
                loss = ops.mean(losses.cross_entropy(b, ln) + losses.cross_entropy(b, la)
                                + 0.5 * losses.alp_loss(ln, la))
                if with_at:
                    loss = loss + ops.mean(attention.stacked_pairing_loss(out["stages"], 2))
            opt.apply(t.gradient(loss, v), v)
            return loss
        return f
    f1, f2 = trf(False), trf(True)
    F["train_2B_feat"] = lambda: f1(x2, y)
    F["train_2B_feat_at"] = lambda: f2(x2, y)
    for name, method, kw in [("step_pat", "pat", {}),
                             ("step_pat_nc", "pat", dict(clean_metrics=False)),
                             ("step_at_alp", "at_alp", {}), ("step_alp", "alp", {}),
                             ("step_at_alp_at0", "at_alp", dict(at_weight=0.0))]:
        F[name] = pkg(method, **kw)
    rs = reference_pgd_step(clf(), keras.optimizers.SGD(0.05, momentum=0.9), 0.1, 0.025, 7,
                            jit_compile=jit)
    F["step_ref"] = lambda: rs(x, y)
    return F


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--pieces", default="", help="comma-separated subset (default: all)")
    parser.add_argument("--jit", action="store_true", help="compile every piece with XLA")
    record.add_out_flag(parser, "profile_28x28")
    args = parser.parse_args(argv)
    run = record.start(None if argv is None else [__file__] + list(argv))
    F = pieces(args.jit)
    names = args.pieces.split(",") if args.pieces else list(F)
    fns = {n: (lambda f=F[n]: timing.sync(f())) for n in names}
    series = timing.round_robin_wall_cpu(fns, args.rounds, warmup=2)
    for n in names:
        wall, cpu = series["wall"][n], series["cpu"][n]
        print(f"{n:18s} median {1e3 * statistics.median(wall):8.1f} ms   min "
              f"{1e3 * min(wall):8.1f}  cpu median {1e3 * statistics.median(cpu):8.1f} ms",
              flush=True)
    ratios = record.paired(series, PAIRS)
    for entry in ratios:
        print(f"{entry['name']:18s} / {entry['baseline']:14s} wall "
              f"{record.format_ratio(entry, 'wall')}  cpu {record.format_ratio(entry, 'cpu')}")
    record.write(args.out, run,
                 settings={"rounds": args.rounds, "batch": B, "jit": args.jit,
                           "pieces": names, "warmup_rounds": 2, "eps": 0.1,
                           "step_size": 0.025, "pgd_steps": 7},
                 rounds={"wall_seconds": series["wall"], "cpu_seconds": series["cpu"]},
                 ratios=ratios)
    return args.out


if __name__ == "__main__":
    main()
