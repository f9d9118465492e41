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
(mixed_bfloat16), ``_awp`` (``awp_gamma=0.01``, no warm-up). ``ref_kbn`` and
``ref_xla`` exist for the reference, which always attacks the classifier as it is.

Writes every round's wall and CPU seconds, the ratios and the run's command,
commit, machine and load to ``--out`` (default bench/results/step_28x28.json).

    KERAS_BACKEND=tensorflow TF_CPP_MIN_LOG_LEVEL=2 PYTHONPATH=. \
        python bench/step_28x28.py --model fmnist --rounds 10 --steps 8 \
        --variants ref,pat,pat_nc,at_alp,pat_awp \
        --out bench/results/step_fmnist.json
"""

import argparse
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import atalp_keras as ak  # noqa: E402
from atalp_keras.folding import attack_folding  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from speedlib.reference import reference_pgd_step  # noqa: E402  (the bench's one hand-written loop)
from speedlib import record, timing  # noqa: E402

EPS, STEP, PGD_STEPS, BATCH, WIDTHS = 0.1, 0.025, 7, 128, (8, 16, 16, 32)
AWP_GAMMA = 0.01  # csdongxian/AWP's value for PGD-AT
SUFFIXES = ("nc", "kbn", "nofold", "xla", "bf16", "awp")


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
            fold=True, awp_gamma=0.0):
    if policy:  # the layers built now compute in `policy` (float32 logits)
        keras.mixed_precision.set_global_policy(policy)
    try:
        model = ak.ATALPModel(classifier(fused_bn=fused_bn))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9), method=method,
                  attack=ak.PGDAttack(EPS, STEP, PGD_STEPS, seed=0), eval_attack=None,
                  jit_compile=jit_compile, clean_metrics=clean_metrics, awp_gamma=awp_gamma)

    def run(ds):
        with attack_folding(fold):  # read when fit traces the step
            model.fit(ds, epochs=1, verbose=0)
    return run


def builder(name):
    """The run function of variant ``name`` (see the module docstring)."""
    base, *suffixes = name.split("_")
    if base == "at":  # at_alp
        base, suffixes = "at_alp", suffixes[1:]
    unknown = set(suffixes) - set(SUFFIXES)
    if unknown or base not in ("ref", "pat", "at_alp", "alp", "fast", "trades") \
            or (base == "ref" and set(suffixes) - {"kbn", "xla"}):
        raise SystemExit(f"Unknown variant {name!r}; see --help.")
    options = dict(jit_compile="xla" in suffixes, fused_bn="kbn" not in suffixes)
    if base == "ref":
        return reference(**options)
    return package(base, policy="mixed_bfloat16" if "bf16" in suffixes else None,
                   clean_metrics="nc" not in suffixes, fold="nofold" not in suffixes,
                   awp_gamma=AWP_GAMMA if "awp" in suffixes else 0.0, **options)


def baseline(name):
    """The reference a variant is compared with: same BatchNorm, same XLA."""
    suffixes = [s for s in ("kbn", "xla") if f"_{s}" in name]
    return "_".join(["ref"] + suffixes)


def pairs_of(names):
    """``(variant, baseline)`` pairs among ``names``: each variant against its
    reference loop; ``at_alp*`` against ``pat`` with the same suffixes (the
    issue's second target); a variant with a lever suffix (``_nc``, ``_nofold``,
    ``_xla``, ``_bf16``, ``_awp``, or ``_kbn_nofold``: the package as it was before
    session 8) against the same variant without it."""
    pairs = [(name, baseline(name)) for name in names]
    pairs += [(name, "pat" + name[len("at_alp"):]) for name in names if name.startswith("at_alp")]
    pairs += [(name, name.replace(f"_{suffix}", "")) for name in names
              for suffix in ("nc", "kbn_nofold", "nofold", "xla", "bf16", "awp")
              if f"_{suffix}" in name]
    kept = []
    for name, base in pairs:
        if base != name and base in names and (name, base) not in kept:
            kept.append((name, base))
    return kept


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--variants", default="ref,ref_xla,pat,pat_xla,at_alp,at_alp_xla",
                        help="comma-separated variant names (module docstring)")
    parser.add_argument("--model", choices=("tiny", "fmnist"), default="tiny",
                        help="tiny ResNet (widths 8,16,16,32) or the Fashion-MNIST backbone")
    record.add_out_flag(parser, "step_28x28")
    args = parser.parse_args(argv)
    run = record.start(None if argv is None else [__file__] + list(argv))
    global MODEL
    MODEL = args.model
    rng = np.random.default_rng(0)
    n = args.steps * BATCH
    x = rng.uniform(size=(n, 28, 28, 1)).astype("float32")
    y = rng.integers(0, 10, size=n).astype("int32")
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH).cache()
    names = args.variants.split(",")
    runs = {name: builder(name) for name in names}
    # One warm-up round (traces, compiles), then round-robin; wall and CPU seconds.
    series = timing.round_robin_wall_cpu({name: lambda r=r: r(ds) for name, r in runs.items()},
                                         args.rounds, warmup=1)
    record.report_round_robin(
        args.out, run, f"{args.model}; {args.rounds} rounds x {args.steps} steps of {BATCH} images",
        series, pairs_of(names), n,
        settings={"model": args.model, "rounds": args.rounds, "steps": args.steps,
                  "batch": BATCH, "eps": EPS, "step_size": STEP, "pgd_steps": PGD_STEPS,
                  "awp_gamma": AWP_GAMMA, "variants": names, "warmup_rounds": 1})
    return args.out


if __name__ == "__main__":
    main()
