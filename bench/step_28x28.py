"""Train-step speed at 28x28: the package's `pat` / `at_alp` against a hand-written
PGD-AT step, with and without XLA, in one process, round-robin (issue 11).

Tiny ResNet (widths 8,16,16,32), batch 128, PGD-7 at eps 0.1 (step 0.025), random
images of shape (N, 28, 28, 1). Each round runs every variant for --steps steps
(one `fit` epoch over a prepared tf.data set; the reference loops over the same
batches); img/s is the median over rounds after one warm-up round.

    KERAS_BACKEND=tensorflow TF_CPP_MIN_LOG_LEVEL=2 PYTHONPATH=. \
        python bench/step_28x28.py --rounds 3 --steps 8
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

import atalp_keras as ak  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from speedlib.reference import reference_pgd_step  # noqa: E402  (the bench's one hand-written loop)

EPS, STEP, PGD_STEPS, BATCH, WIDTHS = 0.1, 0.025, 7, 128, (8, 16, 16, 32)


def classifier(seed=0):
    keras.utils.set_random_seed(seed)
    return ak.tiny_resnet((28, 28, 1), 10, widths=WIDTHS)


def reference(jit_compile):
    """Madry PGD-7 AT in one tf.function: random start, 7 signed steps, one update."""
    step = reference_pgd_step(classifier(), keras.optimizers.SGD(0.05, momentum=0.9), EPS,
                              STEP, PGD_STEPS, jit_compile=jit_compile, seed=0)

    def run(ds):
        for x, y in ds:
            loss = step(x, y)
        float(loss)
    return run


def package(method, jit_compile):
    model = ak.ATALPModel(classifier())
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9), method=method,
                  attack=ak.PGDAttack(EPS, STEP, PGD_STEPS, seed=0), eval_attack=None,
                  jit_compile=jit_compile)

    def run(ds):
        model.fit(ds, epochs=1, verbose=0)
    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--variants", default="ref,ref_xla,pat,pat_xla,at_alp,at_alp_xla")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    n = args.steps * BATCH
    x = rng.uniform(size=(n, 28, 28, 1)).astype("float32")
    y = rng.integers(0, 10, size=n).astype("int32")
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH).cache()
    builders = {"ref": lambda: reference(False), "ref_xla": lambda: reference(True)}
    for method in ("pat", "at_alp", "alp", "fast", "trades"):
        builders[method] = lambda m=method: package(m, False)
        builders[method + "_xla"] = lambda m=method: package(m, True)
    names = args.variants.split(",")
    runs = {name: builders[name]() for name in names}
    times = {name: [] for name in names}
    for round_ in range(args.rounds + 1):  # round 0 warms up (traces, compiles)
        for name in names:
            start = time.perf_counter()
            runs[name](ds)
            if round_:
                times[name].append(time.perf_counter() - start)
    ref = {False: "ref", True: "ref_xla"}
    print(f"{'variant':12s} {'img/s':>8s} {'vs ref':>7s}   (median of {args.rounds} rounds x "
          f"{args.steps} steps of {BATCH})")
    for name in names:
        speed = n / statistics.median(times[name])
        base = ref[name.endswith("_xla")]
        ratio = (f"{speed / (n / statistics.median(times[base])):6.2f}x"
                 if base in times else "   -")
        print(f"{name:12s} {speed:8.0f} {ratio}")


if __name__ == "__main__":
    main()
