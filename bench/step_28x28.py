"""Train-step speed at 28x28: the package's `pat` / `at_alp` against a hand-written
PGD-AT step, with and without XLA, in one process, round-robin (issue 11).

Tiny ResNet (widths 8,16,16,32) or the Fashion-MNIST backbone, batch 128, PGD-7
at eps 0.1 (step 0.025), random images of shape (N, 28, 28, 1). Each round runs
every variant for --steps steps (one `fit` epoch over a prepared tf.data set;
the reference loops over the same batches), after one warm-up round.

Ratios are paired: each round divides a variant's time by its baseline's time
in that same round, and the table gives the median of those per-round ratios
with a 95% bootstrap interval. On a VM whose speed drifts between rounds this
resolves a comparison far better than ratios of separately taken medians.

Variant names: ``ref`` (the hand-written loop) or a preset (``pat``, ``at_alp``,
``alp``, ``fast``, ``trades``), then optional suffixes: ``_nc``
(``clean_metrics=False``), ``_kbn`` (the backbone built with Keras'
BatchNormalization instead of the fused kernel), ``_nofold`` (the attack calls
the classifier as it is, not its BatchNorm-folded view), ``_xla`` or ``_bf16``
(mixed_bfloat16). ``ref_kbn`` and ``ref_xla`` exist for the reference, which
always attacks the classifier as it is.

    KERAS_BACKEND=tensorflow TF_CPP_MIN_LOG_LEVEL=2 PYTHONPATH=. \
        python bench/step_28x28.py --model fmnist --rounds 15 --steps 8 \
        --variants ref,pat,pat_nc,at_alp,pat_nofold,at_alp_nofold
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
from atalp_keras.folding import attack_folding  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from speedlib.reference import reference_pgd_step  # noqa: E402  (the bench's one hand-written loop)
from speedlib.timing import paired_ratio  # noqa: E402

EPS, STEP, PGD_STEPS, BATCH, WIDTHS = 0.1, 0.025, 7, 128, (8, 16, 16, 32)


MODEL = "tiny"


def classifier(seed=0, fused_bn=True):
    keras.utils.set_random_seed(seed)
    if MODEL == "fmnist":
        from atalp_keras.backbones.registry import build_backbone
        return build_backbone("fmnist", (28, 28, 1), 10, fused_bn=fused_bn)
    return ak.tiny_resnet((28, 28, 1), 10, widths=WIDTHS, fused_bn=fused_bn)


def reference(jit_compile, fused_bn=True):
    """Madry PGD-7 AT in one tf.function: random start, 7 signed steps, one update."""
    step = reference_pgd_step(classifier(fused_bn=fused_bn),
                              keras.optimizers.SGD(0.05, momentum=0.9), EPS, STEP, PGD_STEPS,
                              jit_compile=jit_compile, seed=0)

    def run(ds):
        for x, y in ds:
            loss = step(x, y)
        float(loss)
    return run


def package(method, jit_compile=False, policy=None, clean_metrics=True, fused_bn=True,
            fold=True):
    if policy:  # the layers built now compute in `policy` (float32 logits)
        keras.mixed_precision.set_global_policy(policy)
    try:
        model = ak.ATALPModel(classifier(fused_bn=fused_bn))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9), method=method,
                  attack=ak.PGDAttack(EPS, STEP, PGD_STEPS, seed=0), eval_attack=None,
                  jit_compile=jit_compile, clean_metrics=clean_metrics)

    def run(ds):
        with attack_folding(fold):  # read when fit traces the step
            model.fit(ds, epochs=1, verbose=0)
    return run


def builder(name):
    """The run function of variant ``name`` (see the module docstring)."""
    base, *suffixes = name.split("_")
    if base == "at":  # at_alp
        base, suffixes = "at_alp", suffixes[1:]
    unknown = set(suffixes) - {"nc", "kbn", "nofold", "xla", "bf16"}
    if unknown or base not in ("ref", "pat", "at_alp", "alp", "fast", "trades") \
            or (base == "ref" and set(suffixes) - {"kbn", "xla"}):
        raise SystemExit(f"Unknown variant {name!r}; see --help.")
    options = dict(jit_compile="xla" in suffixes, fused_bn="kbn" not in suffixes)
    if base == "ref":
        return reference(**options)
    return package(base, policy="mixed_bfloat16" if "bf16" in suffixes else None,
                   clean_metrics="nc" not in suffixes, fold="nofold" not in suffixes,
                   **options)


def baseline(name):
    """The reference a variant is compared with: same BatchNorm, same XLA."""
    suffixes = [s for s in ("kbn", "xla") if f"_{s}" in name]
    return "_".join(["ref"] + suffixes)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--variants", default="ref,ref_xla,pat,pat_xla,at_alp,at_alp_xla",
                        help="comma-separated variant names (module docstring)")
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
    names = args.variants.split(",")
    runs = {name: builder(name) for name in names}
    times = {name: [] for name in names}
    cpu = {name: [] for name in names}  # this process's CPU seconds: steadier under load
    for round_ in range(args.rounds + 1):  # round 0 warms up (traces, compiles)
        for name in names:
            start, start_cpu = time.perf_counter(), time.process_time()
            runs[name](ds)
            if round_:
                times[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - start_cpu)
    print(f"{args.model}; {args.rounds} rounds x {args.steps} steps of {BATCH} images; "
          "time ratios are medians of per-round ratios [95% bootstrap interval]")
    print(f"{'variant':12s} {'img/s':>7s} {'cpu s':>6s}  {'time / baseline (wall)':>24s}  "
          f"{'time / baseline (cpu)':>24s}  baseline")
    pairs = [(name, baseline(name)) for name in names]
    # at_alp against pat with the same suffixes (the issue's second target).
    pairs += [(name, "pat" + name[len("at_alp"):]) for name in names
              if name.startswith("at_alp") and "pat" + name[len("at_alp"):] in times]
    for name, base in pairs:
        def ratio(series):
            if base not in series or base == name:
                return f"{'-':>24s}"
            median, low, high = paired_ratio(series[name], series[base])
            return f"{median:6.3f} [{low:5.3f}, {high:5.3f}]".rjust(24)
        speed = n / statistics.median(times[name])
        print(f"{name:12s} {speed:7.0f} {statistics.median(cpu[name]):6.2f}  "
              f"{ratio(times)}  {ratio(cpu)}  {base}")


if __name__ == "__main__":
    main()
