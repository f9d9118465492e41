"""Evaluation attacks with and without the BatchNorm-folded view (issue 11).

Every attack calls a functional classifier through `atalp_keras.folding.attack_view`,
the same function with each BatchNorm folded into its convolution. This script
times evaluation attacks on real Fashion-MNIST test images of a trained model
with the view (``fold``) and with the classifier as it is (``nofold``), in one
process, round-robin, and checks that both reach the same robust accuracy.
Every round's wall and CPU seconds, the nofold / fold ratios and the robust
accuracies go to ``--out``.

    KERAS_BACKEND=tensorflow TF_CPP_MIN_LOG_LEVEL=2 PYTHONPATH=. \\
        python bench/fold_eval_28x28.py \\
        --model runs/fmnist_eps0.1/models/pat/seed0/classifier.keras --points 1000 \\
        --out bench/results/fold_eval_28x28.json

Needs the Fashion-MNIST files (``apt-get install -y dataset-fashion-mnist``).
"""

import argparse
import os
import statistics
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import atalp_keras as ak  # noqa: E402
from atalp_keras import data  # noqa: E402
from atalp_keras.attacks import get_attack  # noqa: E402
from atalp_keras.attacks.batching import predict_classes  # noqa: E402
from atalp_keras.folding import attack_folding  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from speedlib import record, timing  # noqa: E402

# Attack name -> options beyond eps and seed.
SETTINGS = {
    "pgd": lambda eps: {"num_steps": 20, "step_size": 2.5 * eps / 20},
    "apgd-ce": lambda eps: {"num_steps": 100},
    "square": lambda eps: {"n_queries": 1000},
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="runs/fmnist_eps0.1/models/pat/seed0/classifier.keras",
                        help="a .keras classifier of 28x28x1 images")
    parser.add_argument("--points", type=int, default=1000, help="first N test images")
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--attacks", default="pgd,apgd-ce",
                        help=f"comma-separated, of: {', '.join(SETTINGS)}")
    record.add_out_flag(parser, "fold_eval_28x28")
    args = parser.parse_args(argv)
    run_info = record.start(None if argv is None else [__file__] + list(argv))
    unknown = set(args.attacks.split(",")) - set(SETTINGS)
    if unknown:
        parser.error(f"unknown attack(s) {sorted(unknown)}; expected some of {sorted(SETTINGS)}")
    classifier = ak.load_model(args.model)
    info = data.load_dataset("fashion_mnist")
    x, y = data.to_numpy(info.test)
    x, y = x[:args.points], y[:args.points].astype("int32")
    runs, x_adv = {}, {}
    for name in args.attacks.split(","):
        for fold in (True, False):
            attack = get_attack(name, eps=args.eps, seed=0, **SETTINGS[name](args.eps))
            key = f"{name}/{'fold' if fold else 'nofold'}"

            def run(attack=attack, fold=fold, key=key):
                with attack_folding(fold):  # read when the attack traces
                    x_adv[key] = attack.perturb(classifier, x, y)
            runs[key] = run
    # One warm-up call each (traces), then round-robin; wall and CPU seconds.
    series = timing.round_robin_wall_cpu(runs, args.rounds, warmup=1)
    accuracy = {key: float(np.mean(predict_classes(classifier, images) == y))
                for key, images in x_adv.items()}  # of the last round
    ratios = record.paired(series, [(f"{name}/nofold", f"{name}/fold")
                                    for name in args.attacks.split(",")])
    print(f"{args.model}; first {len(x)} Fashion-MNIST test images, eps {args.eps}, "
          f"{args.rounds} rounds; ratios: median of per-round nofold/fold [95% interval]")
    print(f"{'attack/view':16s} {'wall s':>7s} {'cpu s':>7s} {'robust acc':>10s}")
    for key in runs:
        print(f"{key:16s} {statistics.median(series['wall'][key]):7.2f} "
              f"{statistics.median(series['cpu'][key]):7.2f} {accuracy[key]:10.3f}")
    for entry in ratios:
        print(f"{entry['name']:16s} / fold: wall {record.format_ratio(entry, 'wall')}, "
              f"cpu {record.format_ratio(entry, 'cpu')}")
    record.write(args.out, run_info,
                 settings={"model": args.model, "points": len(x), "eps": args.eps,
                           "rounds": args.rounds, "warmup_rounds": 1,
                           "attacks": {name: SETTINGS[name](args.eps)
                                       for name in args.attacks.split(",")}},
                 robust_accuracy=accuracy,
                 rounds={"wall_seconds": series["wall"], "cpu_seconds": series["cpu"]},
                 ratios=ratios)
    return args.out

if __name__ == "__main__":
    main()
