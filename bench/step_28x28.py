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


MODEL = "tiny"


def classifier(seed=0):
    keras.utils.set_random_seed(seed)
    if MODEL == "fmnist":
        from atalp_keras.backbones.registry import build_backbone
        return build_backbone("fmnist", (28, 28, 1), 10)
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


def package(method, jit_compile, policy=None, clean_metrics=True):
    if policy:  # the layers built now compute in `policy` (float32 logits)
        keras.mixed_precision.set_global_policy(policy)
    try:
        model = ak.ATALPModel(classifier())
    finally:
        keras.mixed_precision.set_global_policy("float32")
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9), method=method,
                  attack=ak.PGDAttack(EPS, STEP, PGD_STEPS, seed=0), eval_attack=None,
                  jit_compile=jit_compile, clean_metrics=clean_metrics)

    def run(ds):
        model.fit(ds, epochs=1, verbose=0)
    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--variants", default="ref,ref_xla,pat,pat_xla,at_alp,at_alp_xla",
                        help="comma-separated: ref, ref_xla and <method>[_xla|_bf16] for "
                             "pat, at_alp, alp, fast, trades (_bf16: mixed_bfloat16; _nc: "
                             "clean_metrics=False, no clean-accuracy forward)")
    parser.add_argument("--model", choices=("tiny", "fmnist"), default="tiny",
                        help="tiny ResNet (widths 8,16,16,32) or the Fashion-MNIST backbone")
    args = parser.parse_args()
    global MODEL
    MODEL = args.model
    rng = np.random.default_rng(0)
    n = args.steps * BATCH
    x = rng.uniform(size=(n, 28, 28, 1)).astype("float32")
    y = rng.integers(0, 10, size=n).astype("int32")
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH).cache()
    builders = {"ref": lambda: reference(False), "ref_xla": lambda: reference(True)}
    for method in ("pat", "at_alp", "alp", "fast", "trades"):
        builders[method] = lambda m=method: package(m, False)
        builders[method + "_xla"] = lambda m=method: package(m, True)
        builders[method + "_bf16"] = lambda m=method: package(m, False, "mixed_bfloat16")
        builders[method + "_nc"] = lambda m=method: package(m, False, clean_metrics=False)
    names = args.variants.split(",")
    runs = {name: builders[name]() for name in names}
    times = {name: [] for name in names}
    cpu = {name: [] for name in names}  # this process's CPU seconds: steadier under load
    for round_ in range(args.rounds + 1):  # round 0 warms up (traces, compiles)
        for name in names:
            start, start_cpu = time.perf_counter(), time.process_time()
            runs[name](ds)
            if round_:
                times[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - start_cpu)
    ref = {False: "ref", True: "ref_xla"}
    print(f"{'variant':12s} {'img/s':>8s} {'vs ref':>7s} {'cpu s':>7s} {'cpu vs ref':>10s}   "
          f"({args.model}; median of {args.rounds} rounds x {args.steps} steps of {BATCH})")
    for name in names:
        speed = n / statistics.median(times[name])
        base = ref[name.endswith("_xla")]
        ratio = (f"{speed / (n / statistics.median(times[base])):6.2f}x"
                 if base in times else "   -")
        used = statistics.median(cpu[name])
        cpu_ratio = (f"{statistics.median(cpu[base]) / used:9.2f}x"
                     if base in cpu else "        -")
        print(f"{name:12s} {speed:8.0f} {ratio} {used:7.2f} {cpu_ratio}")


if __name__ == "__main__":
    main()
