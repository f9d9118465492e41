"""Training pass, input-gradient pass and weight-gradient pass of the fmnist
backbone at batch 64, 128 and 256 (is the doubled batch of the paired presets
more than twice the work?), round-robin in one process. Every round and the
paired ratios of each batch to the one half its size go to ``--out``.

    KERAS_BACKEND=tensorflow TF_CPP_MIN_LOG_LEVEL=2 PYTHONPATH=. \
        python bench/batch_scaling_28x28.py --rounds 15 \
        --out bench/results/batch_scaling_28x28.json
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

from atalp_keras import losses  # noqa: E402
from atalp_keras.backbones.registry import build_backbone  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from speedlib import record, timing  # noqa: E402


def passes(batches):
    """``{f"{kind}_{batch}": zero-argument callable}`` for kind train, grad, wgrad_inf."""
    keras.utils.set_random_seed(0)
    c = build_backbone("fmnist", (28, 28, 1), 10)
    opt = keras.optimizers.SGD(0.05, momentum=0.9)
    v = c.trainable_variables
    rng = np.random.default_rng(0)
    X = {b: (tf.constant(rng.uniform(size=(b, 28, 28, 1)).astype("float32")),
             tf.constant(rng.integers(0, 10, b).astype("int32"))) for b in batches}

    @tf.function(reduce_retracing=False)
    def train(a, b):
        with tf.GradientTape() as t:
            loss = ops.mean(losses.cross_entropy(b, c(a, training=True)))
        opt.apply(t.gradient(loss, v), v)
        return loss

    @tf.function
    def grad(a, b):
        with tf.GradientTape() as t:
            t.watch(a)
            loss = ops.sum(losses.cross_entropy(b, c(a, training=False)))
        return t.gradient(loss, a)

    @tf.function
    def wgrad_inf(a, b):  # weight grads with BN in inference mode
        with tf.GradientTape() as t:
            loss = ops.mean(losses.cross_entropy(b, c(a, training=False)))
        return t.gradient(loss, v)

    return {f"{fn.__name__}_{bs}": (lambda fn=fn, bs=bs: timing.sync(fn(*X[bs])))
            for bs in batches for fn in (train, grad, wgrad_inf)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--batches", default="64,128,256", help="comma-separated batch sizes")
    record.add_out_flag(parser, "batch_scaling_28x28")
    args = parser.parse_args(argv)
    run = record.start(None if argv is None else [__file__] + list(argv))
    batches = [int(b) for b in args.batches.split(",")]
    fns = passes(batches)
    series = timing.round_robin_wall_cpu(fns, args.rounds, warmup=2)
    for n in fns:
        wall, cpu = series["wall"][n], series["cpu"][n]
        print(f"{n:16s} median {1e3 * statistics.median(wall):8.1f} ms  min "
              f"{1e3 * min(wall):8.1f}  cpu median {1e3 * statistics.median(cpu):8.1f}",
              flush=True)
    pairs = [(f"{kind}_{b}", f"{kind}_{b // 2}") for kind in ("train", "grad", "wgrad_inf")
             for b in batches if b // 2 in batches]
    ratios = record.paired(series, pairs)
    for entry in ratios:
        print(f"{entry['name']:16s} / {entry['baseline']:14s} wall "
              f"{record.format_ratio(entry, 'wall')}  cpu {record.format_ratio(entry, 'cpu')}")
    record.write(args.out, run,
                 settings={"rounds": args.rounds, "batches": batches, "warmup_rounds": 2},
                 rounds={"wall_seconds": series["wall"], "cpu_seconds": series["cpu"]},
                 ratios=ratios)
    return args.out


if __name__ == "__main__":
    main()
