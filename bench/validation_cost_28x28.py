"""Share of an epoch that per-epoch validation costs on Fashion-MNIST-shaped
data (issue 11, item 4): the fmnist backbone, batch 128, PGD-7 training at eps
0.1; validation by PGD-10 (step eps/4, as train.py) on every test image (the
old default) or on a fixed 1,000 of 10,000 with all scored clean (the new one).

Measured per image on random 28x28 images, in one process, round-robin:
evaluate with every example attacked, evaluate with none attacked (clean
only, the ATTACK_MASK path), and one fit step of pat and at_alp; the shares
follow for 60,000 training and 10,000 test images. Every round's CPU seconds,
the per-image costs, the shares and the paired ratios go to ``--out``.

    KERAS_BACKEND=tensorflow TF_CPP_MIN_LOG_LEVEL=2 PYTHONPATH=. \\
        python bench/validation_cost_28x28.py --rounds 2 \\
        --out bench/results/validation_cost_28x28.json
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
from atalp_keras.backbones.registry import build_backbone  # noqa: E402
from atalp_keras.model import ATTACK_MASK  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from speedlib import record, timing  # noqa: E402

EPS, BATCH, TRAIN, TEST, SUBSET = 0.1, 128, 60000, 10000, 1000


def model(method):
    keras.utils.set_random_seed(0)
    m = ak.ATALPModel(build_backbone("fmnist", (28, 28, 1), 10))
    m.compile(keras.optimizers.SGD(0.05, momentum=0.9), method=method,
              attack=ak.PGDAttack(EPS, EPS / 4, 7, seed=0),
              eval_attack=ak.PGDAttack(EPS, EPS / 4, 10, seed=1))
    return m


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--images", type=int, default=512, help="images per timed call")
    record.add_out_flag(parser, "validation_cost_28x28")
    args = parser.parse_args(argv)
    run = record.start(None if argv is None else [__file__] + list(argv))
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(args.images, 28, 28, 1)).astype("float32")
    y = rng.integers(0, 10, args.images).astype("int32")

    def evaluation(marked):
        mask = np.full(args.images, marked, "float32")
        return tf.data.Dataset.from_tensor_slices((x, y, {ATTACK_MASK: mask})).batch(BATCH)

    pat, at_alp = model("pat"), model("at_alp")
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH)
    attacked, clean = evaluation(1.0), evaluation(0.0)
    runs = {"eval_attacked": lambda: pat.evaluate(attacked, verbose=0),
            "eval_clean": lambda: pat.evaluate(clean, verbose=0),
            "fit_pat": lambda: pat.fit(train, epochs=1, verbose=0),
            "fit_at_alp": lambda: at_alp.fit(train, epochs=1, verbose=0)}
    # One warm-up round (traces), then round-robin in CPU seconds.
    times = timing.round_robin(runs, timing.fixed_rounds(args.rounds), warmup=1,
                               clock=time.process_time)
    per_image = {name: statistics.median(t) / args.images for name, t in times.items()}
    for name, value in per_image.items():
        print(f"{name:14s} {1e3 * value:7.3f} CPU ms per image")
    full = TEST * per_image["eval_attacked"]
    subset = SUBSET * per_image["eval_attacked"] + (TEST - SUBSET) * per_image["eval_clean"]
    shares = {}
    for method in ("pat", "at_alp"):
        epoch = TRAIN * per_image["fit_" + method]
        shares[method] = {"epoch_cpu_seconds": epoch, "all_attacked_cpu_seconds": full,
                          "all_attacked_share": full / epoch,
                          "subset_attacked_cpu_seconds": subset, "subset_share": subset / epoch}
        print(f"{method}: epoch {epoch:.0f} CPU s; validation, all {TEST} attacked: "
              f"{full:.0f} s = {100 * full / epoch:.1f}% of the epoch; {SUBSET} attacked + "
              f"all clean: {subset:.0f} s = {100 * subset / epoch:.1f}%")
    ratios = record.paired({"cpu": times}, [("fit_at_alp", "fit_pat"),
                                            ("eval_attacked", "eval_clean")])
    for entry in ratios:
        print(f"{entry['name']} / {entry['baseline']}: cpu {record.format_ratio(entry, 'cpu')}")
    record.write(args.out, run,
                 settings={"rounds": args.rounds, "images": args.images, "batch": BATCH,
                           "eps": EPS, "train_images": TRAIN, "test_images": TEST,
                           "attacked_subset": SUBSET, "warmup_rounds": 1,
                           "clock": "process CPU time"},
                 cpu_seconds_per_image=per_image, shares=shares,
                 rounds={"cpu_seconds": times}, ratios=ratios)
    return args.out

if __name__ == "__main__":
    main()
