"""Evaluates a trained classifier under a suite of attacks.

    python evaluate.py --flagfile=configs/digits_eval.flags
    python evaluate.py --model=saved_models/digits_tiny_at_alp \\
        --attacks=fgsm,pgd,autoattack --eps=0.1,0.2 --num_steps=20

The same as the ``atalp-evaluate`` command; see `atalp_keras.cli.evaluate`
and ``python evaluate.py --help``. The settings are
`atalp_keras.evaluation.settings.EvaluateSettings`; the work is
`atalp_keras.evaluation.pipeline.run_evaluation`.
"""

from atalp_keras.cli.evaluate import PROGRAM, define_flags, main, run  # noqa: F401

if __name__ == "__main__":
    main()
