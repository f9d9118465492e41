"""Cross-check atalp_keras's APGD-CE, Square and AutoAttack against ART's.

Not a test and not run in CI. Needs the Adversarial Robustness Toolbox and
``multiprocess`` (which ART's AutoAttack imports without declaring it):

    pip install adversarial-robustness-toolbox==1.20.1 multiprocess

It trains a small CNN on sklearn's digits (or loads ``--model=path.keras``),
then runs both libraries' attacks on the same first N test points at each eps
and prints and writes (``--out``) robust accuracy and wall time per attack,
plus ART's time divided by ours.

Settings compared (both at the paper defaults where the libraries allow):
- APGD-CE: 100 iterations, 1 random start, initial step 2 * eps (ART's
  ``eps_step``).
- Square: 5000 queries (ART: ``max_iter=5000``), p_init 0.8, 1 restart.
- AutoAttack: ours is the standard version (APGD-CE, APGD-T, FAB-T, Square);
  ART's default ensemble is different (APGD-CE and APGD-DLR with 5 restarts
  each, DeepFool, Square with 5 restarts; untargeted), so its number is a
  second opinion, not the same computation.

Example:
    python bench/crosscheck_art.py --n 200 --eps 0.1 0.2 --out art.json
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import atalp_keras as ak  # noqa: E402
from atalp_keras.attacks import APGDAttack, AutoAttack, SquareAttack  # noqa: E402

INSTALL = "pip install adversarial-robustness-toolbox==1.20.1 multiprocess"


def require_art():
    try:
        import art  # noqa: F401
        import multiprocess  # noqa: F401
    except ImportError as error:
        sys.exit(f"This script needs ART and multiprocess ({error}). Install them with:\n"
                 f"    {INSTALL}")


def load_digits_split():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = (data.images / 16.0).astype("float32")[..., None]
    y = data.target.astype("int32")
    return train_test_split(x, y, test_size=0.2, stratify=y, random_state=0)


def train_model(x_train, y_train, seed=0):
    """The same small undefended CNN the tests use (about 5k weights)."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(x_train.shape[1:])
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    h = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    h = keras.layers.Dense(32, activation="relu")(h)
    model = keras.Model(inputs, keras.layers.Dense(10)(h))
    model.compile(keras.optimizers.Adam(1e-2),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x_train, y_train, epochs=30, batch_size=64, verbose=0)
    return model


def robust_accuracy(model, x_adv, x, y, eps):
    """Accuracy on ``x_adv``; points outside the eps-ball or box count as robust."""
    pred = np.argmax(model.predict(x_adv, verbose=0), axis=-1)
    size = np.abs(x_adv - x).reshape(len(x), -1).max(axis=1)
    valid = (size <= eps + 1e-5) & (x_adv.reshape(len(x), -1).min(1) >= -1e-6) \
        & (x_adv.reshape(len(x), -1).max(1) <= 1 + 1e-6)
    return float(np.mean((pred == y) | ~valid)), int(np.sum(~valid))


def art_attacks(model, eps, batch_size):
    from art.attacks.evasion import AutoAttack as ArtAutoAttack
    from art.attacks.evasion import AutoProjectedGradientDescent, SquareAttack as ArtSquare
    from art.estimators.classification import TensorFlowV2Classifier

    classifier = TensorFlowV2Classifier(
        model, nb_classes=10, input_shape=model.input_shape[1:],
        loss_object=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        clip_values=(0.0, 1.0))
    return {
        "apgd-ce": lambda: AutoProjectedGradientDescent(
            classifier, eps=eps, eps_step=2 * eps, max_iter=100, nb_random_init=1,
            loss_type="cross_entropy", batch_size=batch_size, verbose=False),
        "square": lambda: ArtSquare(classifier, eps=eps, max_iter=5000, p_init=0.8,
                                    nb_restarts=1, batch_size=batch_size, verbose=False),
        "autoattack": lambda: ArtAutoAttack(classifier, eps=eps, eps_step=2 * eps,
                                            batch_size=batch_size),
    }


def our_attacks(eps, seed):
    return {
        "apgd-ce": lambda: APGDAttack(eps, num_steps=100, restarts=1, seed=seed),
        "square": lambda: SquareAttack(eps, n_queries=5000, seed=seed),
        "autoattack": lambda: AutoAttack(eps, version="standard", seed=seed),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a .keras digits model (default: train one, ~5 s)")
    parser.add_argument("--n", type=int, default=200, help="test points attacked")
    parser.add_argument("--autoattack-n", type=int, default=None,
                        help="points for the AutoAttack comparison (default --n; ART's is slow)")
    parser.add_argument("--eps", type=float, nargs="+", default=[0.1, 0.2],
                        help="L-inf radii on the [0, 1] scale")
    parser.add_argument("--attacks", nargs="+", default=["apgd-ce", "square", "autoattack"],
                        choices=["apgd-ce", "square", "autoattack"])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args(argv)
    require_art()

    x_train, x_test, y_train, y_test = load_digits_split()
    start = time.time()
    model = ak.load_model(args.model) if args.model else train_model(x_train, y_train)
    print(f"model: {'loaded ' + args.model if args.model else 'trained'} "
          f"({time.time() - start:.1f} s)")
    rows = []
    for eps in args.eps:
        ours, theirs = our_attacks(eps, args.seed), art_attacks(model, eps, args.batch_size)
        for name in args.attacks:
            n = args.autoattack_n if (name == "autoattack" and args.autoattack_n) else args.n
            x, y = x_test[:n], y_test[:n]
            clean = float(np.mean(np.argmax(model.predict(x, verbose=0), -1) == y))
            pair = {}
            for impl, factory in (("atalp_keras", ours[name]), ("art", theirs[name])):
                attack = factory()
                start = time.time()
                if impl == "art":
                    x_adv = attack.generate(x, y)
                else:
                    x_adv = attack.perturb(model, x, y, batch_size=args.batch_size)
                seconds = time.time() - start
                acc, invalid = robust_accuracy(model, np.asarray(x_adv, np.float32), x, y, eps)
                pair[impl] = seconds
                row = {"eps": eps, "attack": name, "impl": impl, "n": n, "clean_accuracy": clean,
                       "robust_accuracy": acc, "seconds": round(seconds, 2),
                       "outside_ball": invalid}
                rows.append(row)
                print(f"eps={eps:<5} {name:<11} {impl:<12} n={n:<4} clean={clean:.3f} "
                      f"robust={acc:.3f} time={seconds:7.1f} s"
                      + (f"  ({invalid} outside the ball)" if invalid else ""), flush=True)
            ratio = pair["art"] / max(pair["atalp_keras"], 1e-9)
            rows.append({"eps": eps, "attack": name, "speed_ratio_art_over_ours": round(ratio, 2)})
            print(f"eps={eps:<5} {name:<11} ART time / ours = {ratio:.1f}", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "results": rows}, f, indent=2)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
