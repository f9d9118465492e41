"""Result tables and files: the Markdown table, ``results.json`` and
``results.md`` (with AutoAttack's per-stage report)."""

import math
import os

from atalp_keras import artifacts
from atalp_keras.errors import UsageError
from atalp_keras.evaluation.stats import format_interval

CLEAN = "none"
WORST_CASE = "worst-case"
RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
TABLE_COLUMNS = ("model", "method", "attack", "eps", "steps", "restarts", "n",
                 "accuracy", "95% interval")


def format_eps(eps):
    """``0.0313725`` -> ``8/255``; ``0.2`` -> ``0.2``; ``0`` -> ``0``."""
    if eps == 0:
        return "0"
    if abs(round(eps, 4) - eps) < 1e-12:
        return f"{eps:g}"
    for denominator in (255, 256):
        k = eps * denominator
        if abs(k - round(k)) < 1e-6:
            return f"{int(round(k))}/{denominator}"
    return f"{eps:.4g}"


def _cell(value):
    return "-" if value is None or value == "" else str(value)


def format_table(records):
    """The Markdown table (model, method, attack, eps, steps, restarts, n,
    accuracy, its Wilson 95% interval over the n images) of ``records``."""
    lines = ["| " + " | ".join(TABLE_COLUMNS) + " |",
             "| " + " | ".join("---" for _ in TABLE_COLUMNS) + " |"]
    for r in records:
        attack = r["attack"]
        if r.get("threat_model") == "transfer":
            attack = f"{attack} (from {r.get('source', 'source')})"
        accuracy = r["accuracy"]
        row = [r.get("model"), r.get("method"), attack,
               format_eps(r["eps"]) if attack != CLEAN else "-",
               r.get("num_steps") or "-", r.get("restarts") or "-", r["n"],
               "nan" if math.isnan(accuracy) else f"{100 * accuracy:.2f}%",
               "-" if math.isnan(accuracy) else format_interval(accuracy, r["n"])]
        lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
    return "\n".join(lines) + "\n"


def format_stage_report(records):
    """AutoAttack's per-stage report of every record that has one (Markdown),
    or ``""``: robust accuracy after each component, the points it attacked
    and its seconds."""
    lines = []
    for r in records:
        if not r.get("stages"):
            continue
        if not lines:
            lines = ["## AutoAttack stages", "",
                     "| model | attack | eps | stage | robust accuracy | points attacked "
                     "| seconds |", "| --- | --- | --- | --- | --- | --- | --- |"]
        for stage in r["stages"]:
            lines.append(f"| {_cell(r.get('model'))} | {r['attack']} | {format_eps(r['eps'])} "
                         f"| {stage['component']} | {100 * stage['robust_accuracy']:.2f}% "
                         f"| {stage['n']} | {stage['seconds']:.1f} |")
    return "\n".join(lines) + "\n" if lines else ""


def write_results(records, out_dir):
    """Writes ``results.json`` and ``results.md`` into ``out_dir``.

    Returns:
        The Markdown written to ``results.md``: the table, then AutoAttack's
        per-stage report when the records have one.
    """
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise UsageError(f"`out_dir` is a file, not a folder. Received: "
                         f"out_dir={out_dir!r}")
    os.makedirs(out_dir, exist_ok=True)
    text = format_table(records)
    stages = format_stage_report(records)
    if stages:
        text += "\n" + stages
    # Atomic: a process killed while writing the 10,000-image records leaves
    # the old file or none, never a truncated one a rerun would take as done.
    artifacts.write_json(os.path.join(out_dir, RESULTS_JSON), records)
    artifacts.atomic_write_text(os.path.join(out_dir, RESULTS_MD), text)
    return text
