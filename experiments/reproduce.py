"""The AT+ALP reproduction report in one command (issues 5 and 12).

    python experiments/reproduce.py                    # digits (docs/results.md)
    python experiments/reproduce.py --quick            # same code path, small numbers
    python experiments/reproduce.py --preset=fmnist    # Fashion-MNIST (docs/results_fmnist.md)

A preset (atalp_keras/reproduction/presets.py) names every setting; a flag
given explicitly wins. The training recipe flags (--epochs, --eps, ...) are
TrainConfig fields, passed through to every model by name. In order: the
AT/ALP weight sweep on a validation split of the training set, the main models
and their gray/black-box sources, the attack suite per model (cached in
<out>/eval/*.json), figures and the report. Rerunning the same command reuses
finished models and evaluations and continues a killed training.
"""

import os
import shlex
import sys

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

from absl import flags  # noqa: E402

from atalp_keras import cli  # noqa: E402
from atalp_keras.cli.common import require_tensorflow_backend  # noqa: E402

PROGRAM = "experiments/reproduce.py"
# Before the reproduction's modules import TensorFlow (cli.run checks too late here).
require_tensorflow_backend(PROGRAM)
from atalp_keras.cli import reproduce  # noqa: E402
FLAGS = flags.FLAGS
NAMES = reproduce.define_all_flags(FLAGS)


def main(argv):
    del argv
    from atalp_keras.reproduction import pipeline

    s = reproduce.settings_from_flags(FLAGS, NAMES[0])
    command = ["python", PROGRAM] + [shlex.quote(a) for a in sys.argv[1:]]
    pipeline.run(s, command, cli.flags_to_text(FLAGS, NAMES[0] + NAMES[1]))


if __name__ == "__main__":
    cli.run(main, program=PROGRAM)
