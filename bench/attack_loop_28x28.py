"""The PGD-7 loop forms at 28x28 (issue 11, item 2): the package's PGDAttack against
hand-written loops (tf.range while-loop, Python-unrolled; Keras or package CE),
fmnist backbone, batch 128, round-robin; ``--jit`` compiles all with XLA. Every
round and the paired ratios to the unrolled hand-written loop go to ``--out``.

    KERAS_BACKEND=tensorflow TF_CPP_MIN_LOG_LEVEL=2 PYTHONPATH=. \
        python bench/attack_loop_28x28.py --jit --rounds 6 \
        --out bench/results/attack_loop_28x28_xla.json
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
from atalp_keras import losses  # noqa: E402
from atalp_keras.attacks.primitives import unrolled_steps  # noqa: E402
from atalp_keras.backbones.registry import build_backbone  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from speedlib import record, timing  # noqa: E402

EPS, STEP, STEPS = 0.1, 0.025, 7


def loops(jit, batch):
    """``{form: zero-argument callable}`` of the PGD-7 forms."""
    keras.utils.set_random_seed(0)
    c = build_backbone("fmnist", (28, 28, 1), 10)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.uniform(size=(batch, 28, 28, 1)).astype("float32"))
    y = tf.constant(rng.integers(0, 10, batch).astype("int32"))
    att = ak.PGDAttack(EPS, STEP, STEPS, seed=0)

    def attack(a, b):
        with unrolled_steps(True):  # as in train_step
            return att(c, a, b)
    ours = tf.function(attack, jit_compile=jit)
    sg = keras.random.SeedGenerator(0)
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def hand_written(loss_kind, loop_kind):
        @tf.function(jit_compile=jit)
        def f(x, y):
            noise = keras.random.uniform(tf.shape(x), -EPS, EPS, seed=sg)
            xa = tf.clip_by_value(x + noise, 0.0, 1.0)

            def one(xa):
                with tf.GradientTape() as tape:
                    tape.watch(xa)
                    lg = c(xa, training=False)
                    loss = ce(y, lg) if loss_kind == "keras" else \
                        ops.sum(losses.cross_entropy(y, lg))
                xa = xa + STEP * tf.sign(tape.gradient(loss, xa))
                return tf.clip_by_value(tf.clip_by_value(xa, x - EPS, x + EPS), 0.0, 1.0)
            if loop_kind == "range":
                for _ in tf.range(STEPS):
                    xa = one(xa)
            else:
                for _ in range(STEPS):
                    xa = one(xa)
            return xa
        return lambda: f(x, y)

    return {"ours": lambda: ours(x, y), "ref_keras_range": hand_written("keras", "range"),
            "ref_ource_range": hand_written("ours", "range"),
            "ref_keras_unrolled": hand_written("keras", "py")}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--jit", action="store_true", help="compile every form with XLA")
    record.add_out_flag(parser, "attack_loop_28x28")
    args = parser.parse_args(argv)
    run = record.start(None if argv is None else [__file__] + list(argv))
    fns = {n: (lambda f=f: timing.sync(f())) for n, f in loops(args.jit, args.batch).items()}
    series = timing.round_robin_wall_cpu(fns, args.rounds, warmup=2)
    for n in fns:
        wall, cpu = series["wall"][n], series["cpu"][n]
        print(f"{n:20s} median {1e3 * statistics.median(wall):8.1f} ms  min "
              f"{1e3 * min(wall):8.1f}  cpu median {1e3 * statistics.median(cpu):8.1f}",
              flush=True)
    ratios = record.paired(series, [(n, "ref_keras_unrolled") for n in fns
                                    if n != "ref_keras_unrolled"])
    for entry in ratios:
        print(f"{entry['name']:20s} / unrolled: wall {record.format_ratio(entry, 'wall')}  "
              f"cpu {record.format_ratio(entry, 'cpu')}")
    record.write(args.out, run,
                 settings={"rounds": args.rounds, "batch": args.batch, "jit": args.jit,
                           "warmup_rounds": 2, "eps": EPS, "step_size": STEP,
                           "pgd_steps": STEPS},
                 rounds={"wall_seconds": series["wall"], "cpu_seconds": series["cpu"]},
                 ratios=ratios)
    return args.out


if __name__ == "__main__":
    main()
