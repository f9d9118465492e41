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


def main(argv):
    del argv
    from atalp_keras.reproduction import long_runs

    if not os.path.isdir(FLAGS.runs):
        raise UsageError(f"No runs folder {FLAGS.runs!r}: train the runs with "
                         f"`{long_runs.CONTINUE}` first. Received: --runs={FLAGS.runs}")
    command = " ".join(["python", PROGRAM] + [shlex.quote(a) for a in sys.argv[1:]])
    runs = long_runs.write_report(FLAGS.runs, FLAGS.out, FLAGS.configs, command)
    for run in runs:
        print(f"{run['name']}: {run['state']}")
    print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
    cli.run(main, program=PROGRAM)
