"""Issue 23's check that the library trains robust models under JAX: `standard`
and `at_alp` trained with KERAS_BACKEND=jax on the bundled digits, their
classifiers saved as .keras files for the TensorFlow evaluation.

    KERAS_BACKEND=jax python experiments/jax_digits.py            # runs/jax_digits/<method>/
    python evaluate.py --model=runs/jax_digits/at_alp/classifier.keras --dataset=digits \\
        --attacks=pgd,autoattack --eps=0.2 --out_dir=runs/jax_digits/at_alp/eval

The recipe is configs/digits_<method>.flags' (tiny ResNet 8,16,16,32, SGD 0.05 with
momentum 0.9 and cosine decay, weight decay 5e-4, batch 64, 30 epochs, PGD-7 at eps
0.2 with step 0.05) on all 1,437 training digits of the seed-0 split (train.py's
split; the test digits are not seen), keeping the last epoch. It reads the digits
through atalp_keras.data, which uses tf.data: TensorFlow must be installed, as it is
here, though training runs on JAX.
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

import keras  # noqa: E402

import atalp_keras as ak  # noqa: E402
from atalp_keras import data  # noqa: E402

EPOCHS, BATCH, EPS, STEP, STEPS = 30, 64, 0.2, 0.05, 7


def train(method, x, y, out, epochs):
    keras.utils.set_random_seed(0)
    classifier = ak.tiny_resnet((8, 8, 1), 10, widths=(8, 16, 16, 32), weight_decay=5e-4)
    steps = -(-len(x) // BATCH) * epochs
    optimizer = keras.optimizers.SGD(keras.optimizers.schedules.CosineDecay(0.05, steps),
                                     momentum=0.9)
    model = ak.ATALPModel(classifier)
    attack = None if method == "standard" else ak.PGDAttack(EPS, STEP, STEPS, seed=0)
    model.compile(optimizer, method=method, attack=attack, eval_attack=None)
    started = time.time()
    history = model.fit(x, y, batch_size=BATCH, epochs=epochs, verbose=2).history
    os.makedirs(out, exist_ok=True)
    classifier.save(os.path.join(out, "classifier.keras"))
    summary = {"backend": keras.backend.backend(), "method": method, "epochs": epochs,
               "train_examples": int(len(x)), "fit_seconds": round(time.time() - started, 1),
               "command": " ".join(["python"] + sys.argv),
               "last_epoch": {k: float(v[-1]) for k, v in history.items()}}
    with open(os.path.join(out, "training.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(f"{method}: {summary['last_epoch']} in {summary['fit_seconds']} s -> {out}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/jax_digits")
    parser.add_argument("--methods", default="standard,at_alp")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    args = parser.parse_args()
    if keras.backend.backend() != "jax":
        raise SystemExit(f"Run under KERAS_BACKEND=jax; Keras chose {keras.backend.backend()}.")
    x, y = data.to_numpy(data.load_dataset("digits", seed=0).train)
    for method in args.methods.split(","):
        train(method, x, y, os.path.join(args.out, method), args.epochs)


if __name__ == "__main__":
    main()
