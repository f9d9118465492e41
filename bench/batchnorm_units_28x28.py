"""What BatchNorm costs in the pieces of a 28x28 adversarial-training step (issue 11).

The fmnist backbone built three ways: Keras' ``BatchNormalization`` (``keras``),
the package's ``FusedBatchNormalization`` (``fused``, the default), and with
every BatchNorm replaced by the identity (``none``, a lower bound, not a model
anyone trains). For each: the inference forward, one attack step (forward +
input gradient, inference mode) on the model and on its folded view
(`atalp_keras.folding.fold_batchnorm`), and a training pass (forward, CE,
weight gradients, SGD update) on B and 2B images; for the fused model also
`at_alp`'s training pass on the 2B concatenated images (the feature model with
its stage outputs, two CEs, ALP and AT: ``ATALPModel.compute_terms``). CPU
milliseconds per call of B = 128 images, medians over interleaved rounds.
Every round's CPU ms and the paired ratios (fused / Keras BN, folded /
unfolded, 2B / B, ...) go to ``--out``.

    KERAS_BACKEND=tensorflow TF_CPP_MIN_LOG_LEVEL=2 PYTHONPATH=. \\
        python bench/batchnorm_units_28x28.py --rounds 10 \\
        --out bench/results/batchnorm_units_28x28.json
"""

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from atalp_keras import ATALPModel, PGDAttack  # noqa: E402
from atalp_keras.backbones import resnet  # noqa: E402
from atalp_keras.folding import fold_batchnorm  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from speedlib import record, timing  # noqa: E402  (round-robin timing shared by the bench)

BATCH = 128
KINDS = ("keras", "fused", "none")
# (piece, baseline piece) ratios of CPU time, paired per round.
PAIRS = [(("fused", p), ("keras", p)) for p in ("forward", "attack step", "train pass B",
                                                 "train pass 2B")]
PAIRS += [((k, "attack step, folded"), (k, "attack step")) for k in ("keras", "fused")]
PAIRS += [(("none", "attack step"), ("fused", "attack step"))]
PAIRS += [((k, "train pass 2B"), (k, "train pass B")) for k in KINDS]
PAIRS += [(("fused", "at_alp pass 2B"), ("fused", "train pass 2B"))]


class _Identity(keras.layers.Layer):
    """Stands where a BatchNorm was (takes and ignores its arguments)."""

    def __init__(self, name=None, **_):
        super().__init__(name=name)

    def call(self, x, training=None):
        return x


def build(kind):
    keras.utils.set_random_seed(0)
    if kind != "none":
        return resnet.fmnist_resnet(fused_bn=kind == "fused")
    original = resnet.FusedBatchNormalization
    resnet.FusedBatchNormalization = _Identity
    try:
        return resnet.fmnist_resnet()
    finally:
        resnet.FusedBatchNormalization = original


def pieces(model, x, y, x2, y2):
    """``{piece: zero-argument callable}`` for one model."""
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    optimizer = keras.optimizers.SGD(0.01)
    variables = model.trainable_variables
    folded = fold_batchnorm(model)

    def attack_step(net):
        @tf.function
        def step(xb, yb):
            with tf.GradientTape() as tape:
                tape.watch(xb)
                loss = ce(yb, net(xb, training=False))
            return tape.gradient(loss, xb)
        return step

    @tf.function
    def forward(xb):
        return model(xb, training=False)

    @tf.function
    def train(xb, yb):
        with tf.GradientTape() as tape:
            loss = ce(yb, model(xb, training=True))
        optimizer.apply(tape.gradient(loss, variables), variables)
        return loss

    result = {"forward": lambda: forward(x), "attack step": lambda f=attack_step(model): f(x, y),
              "train pass B": lambda: train(x, y), "train pass 2B": lambda: train(x2, y2)}
    if folded is not model:
        result["attack step, folded"] = lambda f=attack_step(folded): f(x, y)
    if any(isinstance(layer, resnet.FusedBatchNormalization) for layer in model.layers):
        wrapper = ATALPModel(model)
        wrapper.compile(keras.optimizers.SGD(0.01), method="at_alp",
                        attack=PGDAttack(0.1, 0.025, 7, seed=0), eval_attack=None)

        @tf.function
        def at_alp_pass(xb, yb, x_adv):
            with tf.GradientTape() as tape:
                terms, _, _ = wrapper.compute_terms(xb, yb, x_adv, training=True)
                loss = tf.reduce_mean(terms["loss"])
            optimizer.apply(tape.gradient(loss, variables), variables)
            return loss
        x_adv = tf.clip_by_value(x + 0.05, 0.0, 1.0)
        result["at_alp pass 2B"] = lambda: at_alp_pass(x, y, x_adv)
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--calls", type=int, default=3, help="calls per timing")
    record.add_out_flag(parser, "batchnorm_units_28x28")
    args = parser.parse_args(argv)
    run = record.start(None if argv is None else [__file__] + list(argv))
    rng = np.random.default_rng(0)
    x2 = tf.constant(rng.uniform(size=(2 * BATCH, 28, 28, 1)).astype("float32"))
    y2 = tf.constant(rng.integers(0, 10, 2 * BATCH).astype("int32"))
    x, y = x2[:BATCH], y2[:BATCH]
    fns = {}
    for kind in KINDS:
        for piece, fn in pieces(build(kind), x, y, x2, y2).items():
            fns[(kind, piece)] = fn
    def repeated(fn):  # `--calls` calls, then wait for the result
        def run():
            for _ in range(args.calls):
                out = fn()
            timing.sync(out)
        return run

    seconds = timing.round_robin({key: repeated(fn) for key, fn in fns.items()},
                                 timing.fixed_rounds(args.rounds), warmup=2,
                                 clock=time.process_time)
    cpu = {key: [t / args.calls * 1000.0 for t in values] for key, values in seconds.items()}
    names = list(dict.fromkeys(piece for _, piece in fns))
    print(f"CPU ms per call of {BATCH} images (2B: {2 * BATCH}), median of {args.rounds} rounds")
    print(f"{'piece':22s} {'keras BN':>9s} {'fused BN':>9s} {'no BN':>9s}")
    for piece in names:
        cells = [f"{statistics.median(cpu[(kind, piece)]):9.1f}" if (kind, piece) in cpu
                 else f"{'-':>9s}" for kind in KINDS]
        print(f"{piece:22s} {' '.join(cells)}")
    ratios = record.paired({"cpu": cpu}, PAIRS)
    print("CPU time ratios, median of per-round ratios [95% bootstrap interval]")
    for entry in ratios:
        print(f"  {entry['name']:28s} / {entry['baseline']:28s} {record.format_ratio(entry, 'cpu')}")
    record.write(args.out, run,
                 settings={"rounds": args.rounds, "calls": args.calls, "batch": BATCH,
                           "warmup_rounds": 2, "clock": "process CPU time"},
                 median_cpu_ms={k: statistics.median(v) for k, v in record.keyed(cpu).items()},
                 rounds={"cpu_ms_per_call": record.keyed(cpu)}, ratios=ratios)
    return args.out


if __name__ == "__main__":
    main()
