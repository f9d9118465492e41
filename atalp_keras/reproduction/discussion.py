"""Sentences of the report generated from the measured numbers (every claim
follows from `stats.compare`); the fixed prose is in ``templates/``."""

from atalp_keras.reproduction.common import fmt_eps, fmt_weight
from atalp_keras.reproduction.stats import Stat, compare, points

CAPTIONS = {
    "attention": "Attention maps (p=2) of each stage for clean and white-box PGD images, one "
                 "block of rows per method (first seed)",
    "iterations_white": "White-box accuracy against PGD iterations",
    "iterations_gray": "Gray-box accuracy against PGD iterations (source: same method and "
                       "architecture, another seed)",
    "iterations_black": "Black-box accuracy against PGD iterations (source: another "
                        "architecture, same method)",
    "landscape": "Loss landscapes around test images",
    "accuracy_vs_eps": "Accuracy against eps (white-box PGD, 1 restart)",
}
WORD = {1: "higher", -1: "lower", 0: "tie"}


def caption(s, key):
    """The caption of figure ``key`` in the report of the run ``s``."""
    if key == "iterations_black" and s.blackbox_method:
        return ("Black-box accuracy against PGD iterations (source: another architecture, "
                f"one `{s.blackbox_method}` model for every method)")
    return CAPTIONS.get(key, key)


def _stat(run, method, metric, eps=None):
    return run["agg"].get(method, {}).get((metric, run["eps"] if eps is None else eps),
                                          Stat([], run["n"]))


def code_list(names, empty="none"):
    """``a``, ``b`` as inline code, comma-separated; ``empty`` when there are none."""
    return ", ".join(f"`{m}`" for m in names) or empty


def rule(s, n):
    several = any(len(s.seeds_of(m)) > 1 for m in s.methods)
    text = ("Rule used below: two means are called different only when they differ by more "
            "than the larger standard deviation over seeds when both have several seeds, else "
            "by more than their combined binomial standard error on the test sample")
    if not several:
        text = ("Rule used below (one seed, so no spread over seeds is known): two accuracies "
                "are called different only when they differ by more than their combined "
                "binomial standard error on the test sample")
    return text + (f" (and at least one test image, 1/n = {100 / n:.2f} points). Everything "
                   "below is generated from the tables above.")


def ordering(run, autoattack):
    methods = list(run["agg"])
    aa = {m: _stat(run, m, "autoattack") for m in methods}
    ranked = sorted(methods, key=lambda m: -aa[m].mean)
    pairs = [f"`{a}` > `{b}`" for i, a in enumerate(ranked) for b in ranked[i + 1:]
             if compare(aa[a], aa[b]) > 0]
    total = len(ranked) * (len(ranked) - 1) // 2
    return (f"**Ordering as measured** (AutoAttack {autoattack} accuracy at the training eps "
            f"{fmt_eps(run['eps'])}, %, by mean): "
            + ", ".join(f"`{m}` {aa[m].cell()}" for m in ranked)
            + f". Pairs that differ beyond the rule: {', '.join(pairs) or 'none'} ({len(pairs)} "
            f"of {total}); every other pair is a tie at this number of seeds and test images.")


def at_alp_versus(run):
    """Whether at_alp beats pat and alp (and the others) under AutoAttack."""
    if "at_alp" not in run["agg"]:
        return None
    a = _stat(run, "at_alp", "autoattack")
    parts = []
    for other in [m for m in run["agg"] if m != "at_alp"]:
        b = _stat(run, other, "autoattack")
        if not b.values:
            continue
        verdict = {1: "beats it beyond seed/sample noise", -1: "trails it beyond the noise",
                   0: "is within the noise of it (no measurable difference)"}[compare(a, b)]
        parts.append(f"`{other}` {b.cell()} ({points(a, b)}: at_alp {verdict})")
    if not parts:
        return None
    return (f"**AT+ALP against each method under AutoAttack at eps {fmt_eps(run['eps'])}** "
            f"(`at_alp` {a.cell()}%): " + "; ".join(parts) + ".")


def masking(run, kmax):
    """PGD vs AutoAttack gap and the other signs of masking, per method."""
    rows = []
    for m in run["agg"]:
        pgd, aa = _stat(run, m, "pgd"), _stat(run, m, "autoattack")
        if not pgd.values or not aa.values:
            continue
        notes = [f"PGD {pgd.cell()} vs AutoAttack {aa.cell()} (gap {points(pgd, aa)}, "
                 + ("beyond" if compare(pgd, aa, True) > 0 else "within") + " the noise)"]
        for other in ("rays", "square", f"black@{kmax}", f"gray@{kmax}"):
            o = _stat(run, m, other)
            if o.values and compare(o, pgd, True) < 0:
                notes.append(f"{other.replace('@', ' PGD-')} {o.cell()} is below white-box PGD")
        gradient, square = _stat(run, m, "autoattack_gradient"), _stat(run, m, "square")
        if gradient.values and square.values:
            below = compare(square, gradient, True) < 0
            notes.append(f"AutoAttack's gradient stages (APGD-CE, APGD-T, FAB-T) leave "
                         f"{gradient.cell()}, Square alone {square.cell()} ("
                         + ("below them beyond the noise: the gradients mislead every "
                            "gradient attack, and the AutoAttack number rests on Square"
                            if below else "not below them beyond the noise") + ")")
        rows.append(f"- `{m}`: " + "; ".join(notes))
    if not rows:
        return None
    return (f"**Gradient masking checks at eps {fmt_eps(run['eps'])}** (a large PGD - "
            "AutoAttack gap, or a gradient-free / transfer attack stronger than white-box PGD, "
            "says PGD overstates robustness; attacks on the same models differ beyond the noise "
            "when the gap exceeds their combined binomial standard error on the test sample, "
            "whatever the seeds' spread):\n\n" + "\n".join(rows))


def audit_section(runs):
    """One line per audited model: the main models of each run, then the
    --longer_epochs models (held by the first run)."""
    lines = []
    for run in runs:
        audits = list(run.get("audits", {}).items()) + [
            (row["name"], row["audit"]) for row in run.get("longer", ()) if row.get("audit")]
        for name, checks in audits:
            flagged = [c for c in checks if c["status"] in ("WARN", "FAIL")]
            verdict = "; ".join(f"{c['status']} {c['check']}: {c['detail']}"
                                for c in flagged) or "every check PASS or SKIP"
            lines.append(f"- eps {fmt_eps(run['eps'])}, `{name}`: {verdict}")
    if not lines:
        return ""
    return ("## Gradient-masking audit (`atalp_keras.audit`, per main and longer model)\n\n"
            + "\n".join(lines) + "\n\n")


def sweep_text(sweep):
    if not sweep:
        return None
    chosen, grid = sweep["chosen"], sweep["grid"]
    robust = [g["val_robust"] for g in grid]
    text = (f"**Sweep:** chosen at_weight={fmt_weight(chosen['at_weight'])}, "
            f"alp_weight={fmt_weight(chosen['alp_weight'])} (validation PGD-20 "
            f"{100 * chosen['val_robust']:.1f}%, n={grid[0]['val_n']}); the grid spans "
            f"{100 * (max(robust) - min(robust)):.1f} points; each point was trained once.")
    if sweep.get("at_edge") or sweep.get("alp_edge"):
        text += " The chosen value lies at the edge of the grid: a value beyond it might do better."
    return text


def paragraphs(s, runs, sweep):
    kmax = s.iterations[-1]
    out = [rule(s, runs[0]["n"])]
    for run in runs:
        out += [ordering(run, s.autoattack), at_alp_versus(run), masking(run, kmax)]
    out.append(sweep_text(sweep))
    caveat = (f"**Caveats:** n={runs[0]['n']} test images, a `{s.recipe['model']}` model "
              f"trained {s.recipe['epochs']} epochs on `{s.recipe['dataset']}`; the numbers "
              "describe this setting only.")
    if s.quick:
        caveat += (" This is the **quick** variant: too few epochs and seeds for conclusions; "
                   "run without --quick for the report's real numbers.")
    out.append(caveat)
    return [p for p in out if p]
