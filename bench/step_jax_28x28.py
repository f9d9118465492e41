"""Train-step speed at 28x28 under KERAS_BACKEND=jax (issue 23): the package's
`pat` / `at_alp` against a hand-written jitted JAX PGD-AT step, in one
process, round-robin.

The Fashion-MNIST backbone (or the tiny ResNet), batch 128, PGD-7 at eps 0.1
(step 0.025), SGD 0.05 with momentum 0.9, random images of shape
(N, 28, 28, 1). Each round runs every variant over the same --steps batches
(the package: one `fit` epoch over numpy arrays; the reference: its own loop),
after one warm-up round that compiles.

Variants: ``ref`` (speedlib.reference.reference_pgd_step_jax), ``pat``,
``pat_nc`` (``clean_metrics=False``), ``at_alp``. Ratios are paired per round
(median with a 95% bootstrap interval): every variant against ``ref``, and
``at_alp`` against ``pat``. Issue 23's goal: ``pat`` >= 0.9x the hand-written
loop's speed, i.e. a time ratio <= 1/0.9 = 1.11.

The TensorFlow numbers to compare with, on the same machine, come from
bench/step_28x28.py (another process: compare images per second loosely).

    KERAS_BACKEND=jax PYTHONPATH=. python bench/step_jax_28x28.py \
        --model fmnist --rounds 10 --steps 8 --out bench/results/step_jax_fmnist.json
"""

import argparse
import os
import sys

os.environ["KERAS_BACKEND"] = "jax"

import keras  # noqa: E402
import numpy as np  # noqa: E402

import atalp_keras as ak  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from speedlib import record, timing  # noqa: E402
from speedlib.reference import reference_pgd_step_jax  # noqa: E402

EPS, STEP, PGD_STEPS, BATCH, WIDTHS = 0.1, 0.025, 7, 128, (8, 16, 16, 32)
VARIANTS = ("ref", "pat", "pat_nc", "at_alp")


def classifier(model, seed=0):
    keras.utils.set_random_seed(seed)
    if model == "fmnist":
        from atalp_keras.backbones.registry import build_backbone
        return build_backbone("fmnist", (28, 28, 1), 10)
    return ak.tiny_resnet((28, 28, 1), 10, widths=WIDTHS)


def optimizer():
    return keras.optimizers.SGD(0.05, momentum=0.9)


def builder(name, model, x, y):
    """The run function of variant ``name``: one pass over (x, y)."""
    if name not in VARIANTS:
        raise SystemExit(f"Unknown variant {name!r}; one of {', '.join(VARIANTS)}.")
    if name == "ref":
        step = reference_pgd_step_jax(classifier(model), optimizer(), EPS, STEP, PGD_STEPS)
        batches = [(x[i:i + BATCH], y[i:i + BATCH]) for i in range(0, len(x), BATCH)]
        return lambda: step(batches)
    method = name.split("_nc")[0]
    wrapped = ak.ATALPModel(classifier(model))
    wrapped.compile(optimizer(), method=method,
                    attack=ak.PGDAttack(EPS, STEP, PGD_STEPS, seed=0), eval_attack=None,
                    clean_metrics=not name.endswith("_nc"))
    return lambda: wrapped.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, shuffle=False)


def pairs_of(names):
    pairs = [(name, "ref") for name in names if name != "ref" and "ref" in names]
    if "at_alp" in names and "pat" in names:
        pairs.append(("at_alp", "pat"))
    return pairs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--variants", default="ref,pat,at_alp",
                        help=f"comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("--model", choices=("tiny", "fmnist"), default="fmnist")
    record.add_out_flag(parser, "step_jax_28x28")
    args = parser.parse_args(argv)
    if keras.backend.backend() != "jax":
        raise SystemExit(f"Runs under KERAS_BACKEND=jax; Keras chose {keras.backend.backend()}")
    run = record.start(None if argv is None else [__file__] + list(argv))
    rng = np.random.default_rng(0)
    n = args.steps * BATCH
    x = rng.uniform(size=(n, 28, 28, 1)).astype("float32")
    y = rng.integers(0, 10, size=n).astype("int32")
    names = args.variants.split(",")
    runs = {name: builder(name, args.model, x, y) for name in names}
    series = timing.round_robin_wall_cpu(runs, args.rounds, warmup=1)
    record.report_round_robin(
        args.out, run,
        f"JAX, {args.model}; {args.rounds} rounds x {args.steps} steps of {BATCH} images",
        series, pairs_of(names), n, width=10,
        settings={"backend": "jax", "model": args.model, "rounds": args.rounds,
                  "steps": args.steps, "batch": BATCH, "eps": EPS, "step_size": STEP,
                  "pgd_steps": PGD_STEPS, "variants": names, "warmup_rounds": 1})
    return args.out


if __name__ == "__main__":
    main()
