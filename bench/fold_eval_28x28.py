"""Evaluation attacks with and without the BatchNorm-folded view (issue 11).

Every attack calls a functional classifier through `atalp_keras.folding.attack_view`,
the same function with each BatchNorm folded into its convolution. This script
times evaluation attacks on real Fashion-MNIST test images of a trained model
with the view (``fold``) and with the classifier as it is (``nofold``), in one
process, round-robin, and checks that both reach the same robust accuracy.

    KERAS_BACKEND=tensorflow TF_CPP_MIN_LOG_LEVEL=2 PYTHONPATH=. \\
        python bench/fold_eval_28x28.py \\
        --model runs/fmnist_eps0.1/models/pat/seed0/classifier.keras --points 1000

Needs the Fashion-MNIST files (``apt-get install -y dataset-fashion-mnist``).
"""

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import atalp_keras as ak  # noqa: E402
from atalp_keras import data  # noqa: E402
from atalp_keras.attacks import get_attack  # noqa: E402
from atalp_keras.attacks.batching import predict_classes  # noqa: E402
from atalp_keras.folding import attack_folding  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from speedlib.timing import paired_ratio  # noqa: E402

# Attack name -> options beyond eps and seed.
SETTINGS = {
    "pgd": lambda eps: {"num_steps": 20, "step_size": 2.5 * eps / 20},
    "apgd-ce": lambda eps: {"num_steps": 100},
    "square": lambda eps: {"n_queries": 1000},
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="runs/fmnist_eps0.1/models/pat/seed0/classifier.keras",
                        help="a .keras classifier of 28x28x1 images")
    parser.add_argument("--points", type=int, default=1000, help="first N test images")
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--attacks", default="pgd,apgd-ce",
                        help=f"comma-separated, of: {', '.join(SETTINGS)}")
    args = parser.parse_args()
    unknown = set(args.attacks.split(",")) - set(SETTINGS)
    if unknown:
        parser.error(f"unknown attack(s) {sorted(unknown)}; expected some of {sorted(SETTINGS)}")
    classifier = ak.load_model(args.model)
    info = data.load_dataset("fashion_mnist")
    x, y = data.to_numpy(info.test)
    x, y = x[:args.points], y[:args.points].astype("int32")
    runs = {}
    for name in args.attacks.split(","):
        for fold in (True, False):
            attack = get_attack(name, eps=args.eps, seed=0, **SETTINGS[name](args.eps))

            def run(attack=attack, fold=fold):
                with attack_folding(fold):  # read when the attack traces
                    return attack.perturb(classifier, x, y)
            runs[(name, fold)] = run
    for run in runs.values():  # warm-up: traces
        run()
    times = {key: [] for key in runs}
    cpu = {key: [] for key in runs}
    accuracy = {}
    for _ in range(args.rounds):
        for key, run in runs.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            x_adv = run()
            times[key].append(time.perf_counter() - start)
            cpu[key].append(time.process_time() - start_cpu)
            accuracy[key] = float(np.mean(predict_classes(classifier, x_adv) == y))
    print(f"{args.model}; first {len(x)} Fashion-MNIST test images, eps {args.eps}, "
          f"{args.rounds} rounds; ratios: median of per-round nofold/fold [95% interval]")
    print(f"{'attack':9s} {'view':7s} {'wall s':>7s} {'cpu s':>7s} {'robust acc':>10s}  "
          f"{'nofold / fold (wall)':>22s}  {'nofold / fold (cpu)':>22s}")
    for (name, fold) in runs:
        line = (f"{name:9s} {'fold' if fold else 'nofold':7s} "
                f"{statistics.median(times[(name, fold)]):7.2f} "
                f"{statistics.median(cpu[(name, fold)]):7.2f} {accuracy[(name, fold)]:10.3f}")
        if not fold:
            for series in (times, cpu):
                median, low, high = paired_ratio(series[(name, False)], series[(name, True)])
                line += f"  {median:6.3f} [{low:5.3f}, {high:5.3f}]".rjust(24)
        print(line)


if __name__ == "__main__":
    main()
