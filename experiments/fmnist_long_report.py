"""The report of the long Fashion-MNIST runs (issue 22), from their files.

    python experiments/fmnist_long_report.py      # writes docs/results_fmnist_long.md

Reads runs/fmnist_long/<name>/ (metrics.json, history.csv and the AutoAttack
evaluation on all 10,000 test images that experiments/fmnist_long.sh writes)
and writes the full-test-set tables (one per eps) with Wilson intervals, the published
numbers, McNemar's paired tests, the validation curves model selection read,
and what is still to run. It trains and attacks nothing.
"""

import os
import shlex
import sys

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

from absl import flags  # noqa: E402

from atalp_keras import cli  # noqa: E402
from atalp_keras.errors import UsageError  # noqa: E402

PROGRAM = "experiments/fmnist_long_report.py"
FLAGS = flags.FLAGS
flags.DEFINE_string("runs", "runs/fmnist_long", "Folder of the runs (one subfolder per config).")
flags.DEFINE_string("out", "docs/results_fmnist_long.md",
                    "The report; its figure goes to <out without .md>/validation.png.")
flags.DEFINE_string("configs", "configs", "Folder of the configs/fmnist_<name>.flags files.")
flags.DEFINE_string("baseline", "runs/fmnist_eps0.1/eval/pat_epochs15_seed0.json",
                    "The reproduction's 15-epoch pat evaluation to compare with ('' for none).")


def main(argv):
    del argv
    from atalp_keras.reproduction import long_runs

    if not os.path.isdir(FLAGS.runs):
        raise UsageError(f"No runs folder {FLAGS.runs!r}: train the runs with "
                         f"`{long_runs.CONTINUE}` first. Received: --runs={FLAGS.runs}")
    command = " ".join(["python", PROGRAM] + [shlex.quote(a) for a in sys.argv[1:]])
    runs = long_runs.write_report(FLAGS.runs, FLAGS.out, FLAGS.configs, command,
                                  baseline=_baseline(long_runs))
    for run in runs:
        print(f"{run['name']}: {run['state']}")
    print(f"wrote {FLAGS.out}")


def _baseline(long_runs):
    """--baseline's clean and AutoAttack records and the indices of its
    images (`long_runs.baseline_comparison`), or None without the file. The
    indices of its 1,000 images in the full test set are found once, from the
    data (the reproduction's seeded subset), and kept in the runs folder; a
    kept file found for another baseline is refused (UsageError)."""
    from atalp_keras import artifacts

    if not FLAGS.baseline or not os.path.isfile(FLAGS.baseline):
        return None
    evaluation = artifacts.read_json(FLAGS.baseline)
    subset_path = os.path.join(FLAGS.runs, long_runs.SUBSET_FILE)
    if not os.path.isfile(subset_path):
        from atalp_keras.evaluation import load_test_arrays

        # As experiments/reproduce.py --preset=fmnist drew them (pipeline.load_data).
        x, y, _ = load_test_arrays("fashion_mnist", num_examples=evaluation["n"], seed=0,
                                   data_seed=0)
        x_all, y_all, _ = load_test_arrays("fashion_mnist", data_seed=0)
        artifacts.write_json(subset_path, {
            "source": FLAGS.baseline, "dataset": "fashion_mnist", "data_seed": 0,
            "test_size": len(y_all), "indices": long_runs.match_indices(x, y, x_all, y_all)})
    subset = artifacts.read_json(subset_path)
    if os.path.realpath(subset.get("source") or "") != os.path.realpath(FLAGS.baseline):
        raise UsageError(f"{subset_path} holds the images of {subset.get('source')!r}, not of "
                         f"--baseline={FLAGS.baseline}: delete it to find them again")
    return {"clean": evaluation["parts"]["clean"]["value"],
            "clean_all": evaluation["parts"].get("clean_all", {}).get("value"),
            "autoattack": evaluation["parts"][long_runs.BASELINE_PART]["value"],
            "indices": subset["indices"], "test_size": subset["test_size"]}


if __name__ == "__main__":
    cli.run(main, program=PROGRAM)
