"""Train several presets with the same budget on one dataset and report clean
and white-box PGD accuracy: the smallest honest comparison of the methods.

    python experiments/compare_methods.py --methods=standard,pat,alp,at,at_alp \
        --epochs=30 --eps=0.2 --out=runs/compare_digits

Writes ``results.json`` and ``results.md`` into ``--out`` and prints the table.
"""

import json
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402


def define_flags():
    flags.DEFINE_list("methods", ["standard", "pat", "alp", "at", "at_alp"], "Presets to train.")
    flags.DEFINE_string("dataset", "digits", "Dataset spec (see atalp_keras.data.load_dataset).")
    flags.DEFINE_integer("epochs", 30, "Epochs per method (the same budget for all).", lower_bound=1)
    flags.DEFINE_integer("batch_size", 64, "Global batch size.", lower_bound=1)
    flags.DEFINE_float("learning_rate", 3e-3, "Adam learning rate (cosine decay to 0).")
    flags.DEFINE_float("eps", 0.2, "L-inf radius on the [0, 1] scale, training and evaluation.")
    flags.DEFINE_float("step_size", 0.05, "Training PGD step size.")
    flags.DEFINE_integer("num_steps", 7, "Training PGD steps.", lower_bound=1)
    flags.DEFINE_integer("eval_steps", 20, "Evaluation PGD steps.", lower_bound=1)
    flags.DEFINE_integer("eval_restarts", 1, "Evaluation PGD restarts.", lower_bound=1)
    flags.DEFINE_list("seeds", ["0"], "Seeds; each method is trained once per seed.")
    flags.DEFINE_string("out", "runs/compare_methods", "Output folder.")


def run(methods, dataset, epochs, batch_size, learning_rate, eps, step_size, num_steps,
        eval_steps, eval_restarts, seeds, out):
    import keras
    import numpy as np

    import atalp_keras as ak
    from atalp_keras import data

    info = data.load_dataset(dataset)
    x_train, y_train = data.to_numpy(info.train)
    x_test, y_test = data.to_numpy(info.test)
    records = []
    for seed in seeds:
        for method in methods:
            keras.utils.set_random_seed(seed)
            classifier = ak.tiny_resnet(info.input_shape, info.num_classes)
            model = ak.ATALPModel(classifier)
            steps = epochs * int(np.ceil(len(x_train) / batch_size))
            optimizer = keras.optimizers.Adam(
                keras.optimizers.schedules.CosineDecay(learning_rate, steps))
            attack = ak.default_attack(method, eps=eps, step_size=step_size,
                                       num_steps=num_steps, seed=seed)
            model.compile(optimizer, method=method, attack=attack if attack else "auto",
                          eval_attack=None)
            start = time.time()
            model.fit(x_train, y_train, batch_size=batch_size, epochs=epochs, verbose=0)
            train_seconds = time.time() - start
            pgd = ak.PGDAttack(eps, eps / 4, eval_steps, restarts=eval_restarts, seed=seed)
            x_adv = pgd.perturb(classifier, x_test, y_test)
            clean = float(np.mean(np.argmax(classifier.predict(x_test, verbose=0), -1) == y_test))
            robust = float(np.mean(np.argmax(classifier.predict(x_adv, verbose=0), -1) == y_test))
            record = {"method": method, "seed": seed, "epochs": epochs, "clean": clean,
                      "attack": "pgd", "eps": eps, "num_steps": eval_steps,
                      "step_size": eps / 4, "restarts": eval_restarts, "n": len(y_test),
                      "robust": robust, "train_seconds_per_epoch": train_seconds / epochs}
            records.append(record)
            print(json.dumps(record), flush=True)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(records, f, indent=2)
    lines = ["| method | seed | clean | attack | eps | steps | restarts | n | robust | s/epoch |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in records:
        lines.append(f"| {r['method']} | {r['seed']} | {r['clean']:.3f} | PGD | {r['eps']:g} | "
                     f"{r['num_steps']} | {r['restarts']} | {r['n']} | {r['robust']:.3f} | "
                     f"{r['train_seconds_per_epoch']:.2f} |")
    table = "\n".join(lines)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(table + "\n")
    print(table)
    return records


def main(argv):
    del argv
    f = flags.FLAGS
    run(f.methods, f.dataset, f.epochs, f.batch_size, f.learning_rate, f.eps, f.step_size,
        f.num_steps, f.eval_steps, f.eval_restarts, [int(s) for s in f.seeds], f.out)


if __name__ == "__main__":
    define_flags()
    app.run(main)
