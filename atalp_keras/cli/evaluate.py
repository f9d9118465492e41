"""``atalp-evaluate`` / ``python evaluate.py``: a trained classifier under a
suite of attacks.

    atalp-evaluate --flagfile=configs/digits_eval.flags
    atalp-evaluate --model=saved_models/digits_tiny_at_alp \\
        --attacks=fgsm,pgd,autoattack --eps=0.1,0.2 --num_steps=20
    atalp-evaluate --model=runs/digits_at_alp --attacks=pgd:restarts=5

--model takes a SavedModel (a version folder, or the folder of versions: the
highest is used), a .keras file, or a training --model_dir (its
classifier.keras). Dataset, split seed, image size and eps default to what the
model was trained with (the export's metadata or the run's model card).
Writes results.json, results.md (with AutoAttack's per-stage report),
accuracy_vs_eps.png and the gradient-masking audit into --out_dir and prints
the table; with several attacks at one eps the table ends with the per-image
worst case.

Attacks are registry names, each with optional options:
name[:key=value[:key=value]], e.g. pgd:num_steps=100:restarts=5. Suite-wide
--num_steps, --step_size, --restarts and --queries go to every attack that
takes them. The flags are generated from
`atalp_keras.evaluation.settings.EvaluateSettings`. Bad input exits with code
2 and one line on stderr; an audit FAIL exits with code 1.
"""

import sys

from absl import flags

from atalp_keras.cli import common

PROGRAM = "evaluate.py"
AUDIT_FAILED_EXIT_CODE = 1


def define_flags(flag_values=flags.FLAGS):
    """Defines the command's flags in ``flag_values``; returns their names."""
    from atalp_keras.evaluation.settings import EvaluateSettings

    return common.define_flags(EvaluateSettings, flag_values=flag_values)


def settings_from_flags(flag_values=flags.FLAGS):
    """The `EvaluateSettings` the parsed flags describe."""
    from atalp_keras.evaluation.settings import EvaluateSettings

    return common.dataclass_from_flags(EvaluateSettings, flag_values)


def _run(argv, flag_values=flags.FLAGS):
    if len(argv) > 1:
        common.fail(PROGRAM, f"Unexpected arguments: {' '.join(argv[1:])}")
    from atalp_keras.evaluation.pipeline import run_evaluation

    result = run_evaluation(settings_from_flags(flag_values),
                            echo=lambda line: print(line, flush=True))
    if result.audit_failed:
        print(f"{PROGRAM}: the audit FAILED (see above); results are not trustworthy.",
              file=sys.stderr)
        sys.exit(AUDIT_FAILED_EXIT_CODE)
    return result.records


# ``run(argv, flag_values)``: the evaluation of the parsed flags, returning its
# records (as in results.json); a UsageError exits 2 with one line.
run = common.main_boundary(_run, PROGRAM)


def main(argv=None):
    """``atalp-evaluate`` (and ``python evaluate.py``): TensorFlow quieted
    before it is imported, then the flags of `EvaluateSettings` parsed
    (``--help`` exits 0) and `run` inside the error boundary."""
    common.quiet_tensorflow()
    define_flags()
    common.run(run, program=PROGRAM, quiet=False)
