"""Are the images AutoAttack's Square stage broke beyond its gradient stages'
reach (gradient masking) or only beyond their budget?

    python experiments/square_recheck.py --model=runs/fmnist_long/pat_awp \\
        --state=runs/fmnist_long/pat_awp/eval_autoattack_eps0.1/autoattack.npz \\
        --out=runs/fmnist_long/pat_awp/eval_autoattack_eps0.1/square_recheck.json

Reads from an AutoAttack resume file which images Square broke (the run may
still be in its Square stage: the finished pieces count) and attacks those
clean images again with APGD-CE and APGD-DLR (--restarts x --num_steps) and
APGD-T (--num_steps per target), far beyond AutoAttack's one run of 100
steps each; as a control, as many images that every stage left correct
(seeded). The model, data and eps default to the model's training settings,
as in evaluate.py; --num_examples and --eval_seed must be the AutoAttack run's
(--seed only draws the control and the attacks' starts). Writes the
counts to --out (JSON) and prints them; with --keep_current, an --out made
from the same Square images with the same settings is kept instead
(experiments/fmnist_long.sh).
See atalp_keras/evaluation/square_recheck.py.
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

PROGRAM = "experiments/square_recheck.py"
FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "The model AutoAttack evaluated (as evaluate.py's --model).")
flags.DEFINE_string("state", None, "AutoAttack's resume file (autoattack.npz).")
flags.DEFINE_string("out", None, "The JSON file to write.")
flags.DEFINE_string("dataset", None, "Test data; default: the model's training dataset.")
flags.DEFINE_float("eps", None, "The radius AutoAttack used; default: the training eps.")
flags.DEFINE_integer("num_examples", 0, "As the AutoAttack run's (0: the whole test set).",
                     lower_bound=0)
flags.DEFINE_integer("eval_seed", 0, "The AutoAttack run's evaluate.py --seed, which drew its "
                     "--num_examples images.", lower_bound=0)
flags.DEFINE_integer("num_steps", 500, "Steps of every stronger attack.", lower_bound=1)
flags.DEFINE_integer("restarts", 5, "Restarts of APGD-CE and APGD-DLR.", lower_bound=1)
flags.DEFINE_integer("n_target_classes", 9, "Target classes of APGD-T.", lower_bound=1)
flags.DEFINE_integer("control", -1, "Control images (-1: as many as Square broke).",
                     lower_bound=-1)
flags.DEFINE_integer("batch_size", 256, "Examples per attack call.", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seed of the control's choice and the attacks' starts.",
                     lower_bound=0)
flags.DEFINE_bool("keep_current", False,
                  "Keep an --out file made from the images Square broke in this --state "
                  "with these settings (and exit); redo one made otherwise.")


def main(argv):
    del argv
    from atalp_keras import artifacts
    from atalp_keras.evaluation import square_recheck
    from atalp_keras.evaluation.pipeline import prepare_evaluation
    from atalp_keras.evaluation.settings import EvaluateSettings

    for name in ("model", "state", "out"):
        if not getattr(FLAGS, name):
            raise UsageError(f"--{name} is required. Received: --{name}={getattr(FLAGS, name)}")
    state = square_recheck.read_state(FLAGS.state)
    inputs = prepare_evaluation(EvaluateSettings(
        model=FLAGS.model, dataset=FLAGS.dataset, attacks="none",
        eps=None if FLAGS.eps is None else (FLAGS.eps,), num_examples=FLAGS.num_examples,
        out_dir=os.path.dirname(os.path.abspath(FLAGS.out)), seed=FLAGS.eval_seed,
        audit=False))
    (eps,) = inputs.eps_values
    attacks = square_recheck.stronger_attacks(eps, FLAGS.num_steps, FLAGS.restarts,
                                              FLAGS.n_target_classes, FLAGS.seed)
    labels = [label for label, _ in attacks]
    control = None if FLAGS.control < 0 else FLAGS.control
    if FLAGS.keep_current and square_recheck.made_from(FLAGS.out, state, eps, labels,
                                                       FLAGS.seed, control):
        print(f"{FLAGS.out} was made from the images Square broke in {FLAGS.state}, with "
              "these settings; kept")
        return
    result = square_recheck.recheck(
        inputs.model, inputs.x, inputs.y, state, eps, attacks,
        control=control, batch_size=FLAGS.batch_size,
        seed=FLAGS.seed)
    command = " ".join(["python", PROGRAM] + [shlex.quote(a) for a in sys.argv[1:]])
    artifacts.write_json(FLAGS.out, {
        "command": command, "model": FLAGS.model, "state": FLAGS.state, "eps": eps,
        "num_examples": len(inputs.y), "attacks": labels, "seed": FLAGS.seed,
        "square_attacked": int(state["square_done"].sum()), **result})
    for group in ("square", "control"):
        print(f"{group}: {result[group]['any']} of {result[group]['n']} broken by a stronger "
              "gradient attack")
    print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
    cli.run(main, program=PROGRAM)
