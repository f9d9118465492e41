"""Robustness evaluation: attack suites, running them, reporting, the audit.

A suite is a list of attacks named as in the attack registry
(``atalp_keras.attacks.get_attack``)::

    requests = parse_attack_list("fgsm,pgd:restarts=5,autoattack")
    attacks = build_attacks(requests, eps_values=[8 / 255], num_steps=20)
    records = evaluate_model(model, x_test, y_test, attacks)
    print(write_results(records, "results/my_model"))

Modules: ``suite`` (parsing and building suites), ``run`` (`evaluate_model`,
the records), ``report`` (tables, ``results.json`` / ``results.md`` with
AutoAttack's per-stage report), ``inputs`` (loading the model and its test
data), ``audit`` (the gradient-masking audit), ``stats`` (exact binomial tests),
``settings`` (`EvaluateSettings`, the flags of ``evaluate.py``) and
``pipeline`` (`run_evaluation(settings)`: all of the above as ``evaluate.py``
runs it; imported on use, it draws plots).
"""

from atalp_keras.evaluation import audit, stats
from atalp_keras.evaluation.inputs import (check_source_compatible, load_model_for_eval,
                                           load_test_arrays, resolve_model_path)
from atalp_keras.evaluation.report import (CLEAN, RESULTS_JSON, RESULTS_MD, TABLE_COLUMNS,
                                           WORST_CASE, format_eps, format_stage_report,
                                           format_table, write_results)
from atalp_keras.evaluation.run import evaluate_model, summarize_extras
from atalp_keras.evaluation.suite import EVALUATION_DEFAULTS, build_attacks, parse_attack_list
