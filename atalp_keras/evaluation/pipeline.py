"""One evaluation from its settings: load the model (and its model card's
defaults), the test data and the transfer sources, build the attack suite,
run it, write ``results.json`` / ``results.md`` / ``accuracy_vs_eps.png`` and
the gradient-masking audit (``audit.json`` / ``audit.md``)::

    from atalp_keras.evaluation.pipeline import run_evaluation
    from atalp_keras.evaluation.settings import EvaluateSettings

    result = run_evaluation(EvaluateSettings(model="runs/digits_at_alp",
                                             attacks="fgsm,pgd,autoattack"))
    print(result.table)

Everything that can be refused (attack names, eps, data, shapes, sources,
``out_dir``) is checked before the first attack runs.
"""

import dataclasses
import os

from atalp_keras import artifacts, plots
from atalp_keras.errors import UsageError
from atalp_keras.evaluation import audit
from atalp_keras.evaluation.inputs import (check_source_compatible, load_model_for_eval,
                                           load_test_arrays)
from atalp_keras.evaluation.report import CLEAN, RESULTS_JSON, RESULTS_MD, WORST_CASE, \
    write_results
from atalp_keras.evaluation.run import evaluate_model
from atalp_keras.evaluation.suite import build_attacks, parse_attack_list

AUDIT_JSON = "audit.json"
AUDIT_MD = "audit.md"
PLOT_FILE = "accuracy_vs_eps.png"


@dataclasses.dataclass
class EvaluationInputs:
    """What `prepare_evaluation` loaded and checked."""

    model: object
    x: object
    y: object
    attacks: list
    transfer_attacks: list
    sources: list  # (model, label) pairs
    eps_values: tuple
    name: str
    method: str
    out_dir: str


@dataclasses.dataclass
class EvaluationResult:
    """The records (as in results.json), the Markdown written to results.md,
    the audit's checks (empty without the audit) and the files written."""

    records: list
    table: str
    checks: list
    audit_report: str
    out_dir: str

    @property
    def audit_failed(self):
        return audit.has_failure(self.checks)


def _image_size(settings, metadata):
    if settings.image_size:
        return tuple(settings.image_size)
    return tuple(metadata["image_size"]) if metadata.get("image_size") else None


def _load_model(path, flag):
    """`load_model_for_eval`; its "nothing loadable here" errors name ``--flag``."""
    try:
        return load_model_for_eval(path)
    except ValueError as error:  # The loader's messages are about the path given.
        raise UsageError(f"--{flag}={path}: {error}") from None


def _load_sources(settings, model):
    sources = []
    for path in settings.source_model:
        source, source_metadata = _load_model(path, "source_model")
        check_source_compatible(source, model, path)
        sources.append((source, source_metadata.get("name", path)))
    return sources


def prepare_evaluation(settings):
    """Loads and checks everything an evaluation needs; runs no attack.

    Raises:
        UsageError: For a missing ``--model``, an unknown attack or option, a
            bad or missing eps, data the model does not take, too many
            ``--num_examples``, an incompatible source or an ``--out_dir``
            that is a file.
    """
    if not settings.model:
        raise UsageError("--model is required (a SavedModel folder, a .keras file or a "
                         "training model_dir).")
    # Cheap checks first: a typo in --attacks costs no model loading.
    requests = parse_attack_list(settings.attacks)
    model, metadata = _load_model(settings.model, "model")
    eps_values = tuple(settings.eps or ([metadata["eps"]] if "eps" in metadata else ()))
    if not eps_values:
        raise UsageError("--eps is required: the model's card does not record its "
                         f"training eps. Received: --model={settings.model}")
    suite = dict(num_steps=settings.num_steps, step_size=settings.step_size,
                 restarts=settings.restarts, seed=settings.seed)
    attacks = build_attacks(requests, eps_values, queries=settings.queries, **suite)
    x, y, info = load_test_arrays(
        settings.dataset or metadata.get("dataset", "digits"),
        data_dir=settings.data_dir or metadata.get("data_dir"),
        image_size=_image_size(settings, metadata),
        data_seed=(settings.data_seed if settings.data_seed is not None
                   else metadata.get("data_seed", 0)),
        num_examples=settings.num_examples, seed=settings.seed)
    expected = tuple(model.input_shape[1:])
    if None not in expected and tuple(x.shape[1:]) != expected:
        raise UsageError(
            f"The model takes images of shape {expected} but the data has "
            f"{tuple(x.shape[1:])}; pass --image_size or the training --dataset. "
            f"Received: --dataset={info.name}")
    sources = _load_sources(settings, model)
    pgd_requests = [r for r in requests if r[0] == "pgd"] or [("pgd", {})]
    name = settings.model_name or metadata.get("name", "model")
    out_dir = settings.out_dir or os.path.join("results", name)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise UsageError(f"--out_dir is a file, not a folder. Received: --out_dir={out_dir}")
    return EvaluationInputs(
        model=model, x=x, y=y, attacks=attacks,
        transfer_attacks=build_attacks(pgd_requests, eps_values, **suite) if sources else [],
        sources=sources, eps_values=eps_values, name=name,
        method=settings.method or metadata.get("method", "unknown"), out_dir=out_dir)


def _run_attacks(inputs, settings):
    common = dict(batch_size=settings.batch_size, verbose=settings.verbose,
                  model_name=inputs.name, method=inputs.method)
    records = evaluate_model(inputs.model, inputs.x, inputs.y, inputs.attacks, **common)
    for source, source_name in inputs.sources:
        transferred = evaluate_model(inputs.model, inputs.x, inputs.y,
                                     inputs.transfer_attacks, source=source,
                                     source_name=source_name, **common)
        records.extend(r for r in transferred if r["attack"] != CLEAN)
    return records


def _run_audit(inputs, settings, records, echo):
    if settings.verbose:
        echo("Gradient-masking audit (probe attacks on "
             f"{min(settings.audit_examples, len(inputs.y))} examples):")
    checks = audit.audit(records, inputs.model, inputs.x, inputs.y,
                         eps=max(inputs.eps_values), num_examples=settings.audit_examples,
                         batch_size=settings.batch_size, seed=settings.seed)
    report = audit.format_audit(checks)
    artifacts.write_json(os.path.join(inputs.out_dir, AUDIT_JSON), checks)
    artifacts.atomic_write_text(
        os.path.join(inputs.out_dir, AUDIT_MD),
        f"# Gradient-masking audit of {inputs.name}\n\n```\n{report}\n```\n")
    return checks, report


def run_evaluation(settings, echo=print):
    """Runs the evaluation ``settings`` describe (an `EvaluateSettings`).

    Args:
        settings: What to evaluate and how.
        echo: Called with each line for the user (the table, the files
            written, the audit); the attacks' own progress lines follow
            ``settings.verbose``.

    Returns:
        An `EvaluationResult`.

    Raises:
        UsageError: As `prepare_evaluation`, before any attack runs.
    """
    inputs = prepare_evaluation(settings)
    records = _run_attacks(inputs, settings)
    table = write_results(records, inputs.out_dir)
    plots.plot_accuracy_vs_eps([r for r in records if r["attack"] != WORST_CASE],
                               os.path.join(inputs.out_dir, PLOT_FILE), title=inputs.name)
    echo(table)
    echo(f"Wrote {os.path.join(inputs.out_dir, RESULTS_JSON)}, {RESULTS_MD} and "
         f"{PLOT_FILE}.")
    checks, report = [], ""
    if settings.audit:
        checks, report = _run_audit(inputs, settings, records, echo)
        echo(report)
    return EvaluationResult(records=records, table=table, checks=checks,
                            audit_report=report, out_dir=inputs.out_dir)
