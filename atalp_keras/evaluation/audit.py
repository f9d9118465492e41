"""The gradient-masking audit: checks robustness results for the known signs
that a white-box number overstates robustness, and says PASS / WARN / FAIL
with the numbers behind each verdict.

Signs checked (Athalye et al. 2018; Carlini et al. 2019, "On Evaluating
Adversarial Robustness"; Engstrom et al. 2018 and Mosbach et al. 2018 on logit
pairing):

- ``perturbation_bounds``: every adversarial example stayed in the eps-ball and
  the [0, 1] box. A violation is a bug in an attack: FAIL.
- ``single_step_vs_clean``: FGSM must not raise accuracy above the clean
  accuracy. When it does, the loss gradient at the clean image points away
  from the model's errors: the catastrophic overfitting of single-step
  training (Wong et al. 2020, "Fast is better than free"; Andriushchenko &
  Flammarion 2020), where the white-box numbers of such a model overstate it.
- ``iterative_vs_single_step``: PGD must be at least as strong as FGSM.
- ``more_steps`` / ``restarts``: more PGD steps or restarts must not raise
  accuracy, and should not lower it by much (else the reported PGD number was
  not converged: use more steps or restarts).

"Much" means beyond sampling noise at the sample size: a one-sided exact
binomial test (``stats.py``) of one count against the other accuracy, at
``alpha = 0.05``, instead of a fixed number of points.
- ``large_eps``: at eps = 1 every image is reachable, so accuracy must fall to
  about zero.
- ``gradient_free_vs_white_box``: a gradient-free (Square), hard-label (RayS)
  or transfer attack stronger than the white-box gradient attacks means the
  gradients mislead the white-box attacks. Standard AutoAttack ends with
  Square, so it enters this comparison by its gradient stages only (the robust
  accuracy after FAB-T, from its record's ``stages``).
- ``logits``: the model must return logits, not probabilities.
- ``gradients``: input gradients must be finite and mostly non-zero.
"""

import numpy as np
import tensorflow as tf

from atalp_keras import losses
from atalp_keras.attacks import FGSMAttack, PGDAttack
from atalp_keras.attacks.base import input_gradient
from atalp_keras.attacks.batching import batch_slices, predict_classes, predict_logits
from atalp_keras.evaluation.stats import significantly_higher, significantly_lower

PASS, WARN, FAIL, SKIP = "PASS", "WARN", "FAIL", "SKIP"
WHITE_BOX_GRADIENT = ("fgsm", "pgd", "apgd-ce", "apgd-dlr", "apgd-t", "fab-t",
                      "autoattack-fast")
GRADIENT_FREE = ("square", "rays")
# Ensembles that end with a gradient-free stage (standard AutoAttack: Square).
MIXED = ("autoattack",)


def _check(name, status, detail):
    return {"check": name, "status": status, "detail": detail}


def _accuracy(model, x, y, batch_size):
    return float(np.mean(predict_classes(model, x, batch_size) == y))


def check_bounds(records, tolerance=1e-6):
    """FAIL if any record's adversarial examples left the eps-ball or [0, 1]."""
    bad = []
    for r in records:
        if r.get("attack") in (None, "none", "worst-case"):
            continue
        if r.get("max_perturbation") is not None and \
                r["max_perturbation"] > r["eps"] + tolerance:
            bad.append(f"{r['attack']} eps={r['eps']:g}: max |x_adv - x| = "
                       f"{r['max_perturbation']:.6g}")
        low, high = r.get("min_pixel"), r.get("max_pixel")
        if low is not None and (low < -tolerance or high > 1 + tolerance):
            bad.append(f"{r['attack']} eps={r['eps']:g}: pixels in [{low:.6g}, {high:.6g}]")
    if bad:
        return _check("perturbation_bounds", FAIL,
                      "attack output outside the eps-ball or the [0, 1] box: " + "; ".join(bad))
    return _check("perturbation_bounds", PASS,
                  "every adversarial example is within eps and in [0, 1]")


def gradient_stages(record):
    """The white-box gradient part of a mixed ensemble's record (standard
    AutoAttack): a record of the robust accuracy after its last gradient stage,
    named ``autoattack (apgd-ce+apgd-t+fab-t)``; None without ``stages``."""
    stages = [st for st in record.get("stages", ()) if st.get("component") != "clean"]
    gradient = []
    for stage in stages:
        if stage["component"] in GRADIENT_FREE:
            break
        gradient.append(stage)
    if not gradient:
        return None
    names = "+".join(st["component"] for st in gradient)
    return {**{k: v for k, v in record.items() if k not in ("stages", "correct")},
            "attack": f"{record['attack']} ({names})",
            "accuracy": float(gradient[-1]["robust_accuracy"])}


def check_gradient_free_vs_white_box(records, alpha=0.05):
    """WARN where Square, RayS or a transfer attack beats every white-box
    gradient attack at the same eps by more than sampling noise (exact
    binomial test at the records' ``n``, level ``alpha``). Standard
    AutoAttack counts by its gradient stages (`gradient_stages`)."""
    by_eps = {}
    for r in records:
        by_eps.setdefault(float(r["eps"]), []).append(r)
    verdicts, compared = [], []
    for eps, group in sorted(by_eps.items()):
        white_box = [r for r in group if r.get("threat_model", "white-box") == "white-box"]
        white = [r for r in white_box if r["attack"] in WHITE_BOX_GRADIENT]
        white += [part for part in (gradient_stages(r) for r in white_box
                                    if r["attack"] in MIXED) if part is not None]
        other = [r for r in group if r["attack"] in GRADIENT_FREE
                 or r.get("threat_model") == "transfer"]
        if not white or not other:
            continue
        best_white = min(white, key=lambda r: r["accuracy"])
        best_other = min(other, key=lambda r: r["accuracy"])
        label = best_other["attack"] + (f" from {best_other['source']}"
                                        if best_other.get("threat_model") == "transfer" else "")
        compared.append(f"eps={eps:g}: white-box {best_white['attack']} "
                        f"{best_white['accuracy']:.3f} vs {label} {best_other['accuracy']:.3f}")
        if significantly_lower(best_other["accuracy"], best_white["accuracy"],
                               best_other.get("n", 0), alpha):
            verdicts.append(compared[-1])
    if not compared:
        return _check("gradient_free_vs_white_box", SKIP,
                      "no gradient-free (square, rays) or transfer result next to a white-box "
                      "one at the same eps; add e.g. --attacks=...,square,rays")
    if verdicts:
        return _check("gradient_free_vs_white_box", WARN,
                      "a gradient-free/transfer attack is stronger than white-box beyond "
                      f"sampling noise (binomial test, p < {alpha:g}): gradients mislead the white-box attacks (masking); "
                      "the white-box number overstates robustness. " + "; ".join(verdicts))
    return _check("gradient_free_vs_white_box", PASS, "; ".join(compared))


def check_logits(model, x, batch_size=256):
    """WARN if the outputs look like probabilities or log-probabilities."""
    out = predict_logits(model, x[:batch_size], batch_size).astype(np.float64)
    sums = out.sum(-1)
    if np.all(out >= 0) and np.allclose(sums, 1.0, atol=1e-3):
        return _check("logits", WARN,
                      "outputs are non-negative and sum to 1 (mean row sum "
                      f"{sums.mean():.4f}): the model returns probabilities; attacks need "
                      "logits (remove the final softmax)")
    logsumexp = np.log(np.exp(out - out.max(-1, keepdims=True)).sum(-1)) + out.max(-1)
    if np.all(out <= 0) and np.allclose(logsumexp, 0.0, atol=1e-3):
        return _check("logits", WARN, "outputs are log-probabilities (logsumexp = 0); "
                                      "cross-entropy attacks still work but DLR-based ones "
                                      "see shifted margins")
    return _check("logits", PASS, f"outputs are unnormalised (mean row sum {sums.mean():.3g})")


def check_gradients(model, x, y, batch_size=256, max_zero_fraction=0.1):
    """WARN if input gradients of the cross-entropy are NaN or zero on many points."""
    zero = nonfinite = 0
    for part in batch_slices(len(x), batch_size):
        xb = tf.constant(x[part])
        with tf.GradientTape() as tape:
            tape.watch(xb)
            loss = tf.reduce_sum(losses.cross_entropy(y[part], model(xb, training=False)))
        grad = np.asarray(input_gradient(tape, loss, xb)).reshape(len(xb), -1)
        finite = np.all(np.isfinite(grad), axis=-1)
        nonfinite += int(np.sum(~finite))
        zero += int(np.sum(finite & (np.max(np.abs(grad), axis=-1) == 0)))
    n = len(x)
    detail = f"{zero}/{n} inputs with zero gradient, {nonfinite}/{n} with NaN/inf"
    if nonfinite or zero > max_zero_fraction * n:
        return _check("gradients", WARN, detail + ": gradient attacks cannot move these points "
                      "(shattered or vanishing gradients); trust only gradient-free results")
    return _check("gradients", PASS, detail)


def run_probes(model, x, y, eps, num_steps=10, batch_size=256, seed=0):
    """The extra attacks the audit needs, on ``(x, y)`` at ``eps``:
    FGSM, PGD-k, PGD-5k, PGD-k x 5 restarts and PGD-k at eps = 1; the
    accuracies also hold ``"clean"``, on the same points."""
    step = 2.5 * eps / num_steps
    probes = {
        "fgsm": FGSMAttack(eps),
        "pgd": PGDAttack(eps, step, num_steps, seed=seed),
        "pgd_more_steps": PGDAttack(eps, 2.5 * eps / (5 * num_steps), 5 * num_steps, seed=seed),
        "pgd_restarts": PGDAttack(eps, step, num_steps, restarts=5, seed=seed),
        "pgd_eps_1": PGDAttack(1.0, 0.1, max(num_steps, 20), seed=seed),
    }
    accuracy = {"clean": _accuracy(model, x, y, batch_size)}
    accuracy.update({name: _accuracy(model, attack.perturb(model, x, y, batch_size), y,
                                     batch_size) for name, attack in probes.items()})
    return accuracy, probes


def check_probes(accuracy, num_steps, eps, n, alpha=0.05, large_eps_ceiling=0.05):
    """Verdicts on the probe accuracies of `run_probes`, measured on ``n``
    points; a difference counts when an exact binomial test at ``n`` rejects
    equality at level ``alpha``. ``single_step_vs_clean`` is checked when
    ``accuracy`` holds ``"clean"``."""
    k = num_steps
    lower = lambda a, ref: significantly_lower(a, ref, n, alpha)  # noqa: E731
    higher = lambda a, ref: significantly_higher(a, ref, n, alpha)  # noqa: E731
    checks = []
    fgsm, pgd = accuracy["fgsm"], accuracy["pgd"]
    if "clean" in accuracy:
        clean = accuracy["clean"]
        status = WARN if higher(fgsm, clean) else PASS
        checks.append(_check(
            "single_step_vs_clean", status,
            f"eps={eps:g}: clean {clean:.3f}, FGSM {fgsm:.3f}"
            + (": the attack raised accuracy, so the gradient at the clean image points "
               "away from the errors (catastrophic overfitting of single-step training); "
               "trust only multi-step, gradient-free and transfer results"
               if status == WARN else "")))
    status = WARN if higher(pgd, fgsm) else PASS
    checks.append(_check("iterative_vs_single_step", status,
                         f"eps={eps:g}: FGSM {fgsm:.3f}, PGD-{k} {pgd:.3f}"
                         + (": one step beats the iterative attack, a classic sign of masked "
                            "gradients" if status == WARN else "")))
    more = accuracy["pgd_more_steps"]
    if higher(more, pgd):
        status, note = WARN, ": more steps made the attack weaker (noisy or masked gradients)"
    elif lower(more, pgd):
        status, note = WARN, (f": PGD-{k} was not converged; report PGD with at least "
                              f"{5 * k} steps")
    else:
        status, note = PASS, ""
    checks.append(_check("more_steps", status,
                         f"eps={eps:g}: PGD-{k} {pgd:.3f}, PGD-{5 * k} {more:.3f}" + note))
    restarts = accuracy["pgd_restarts"]
    if lower(restarts, pgd):
        status, note = WARN, (": restarts find much more (a rugged loss surface, as reported "
                              "for logit pairing); report results with restarts")
    else:
        status, note = PASS, ""
    checks.append(_check("restarts", status,
                         f"eps={eps:g}: PGD-{k} x1 {pgd:.3f}, x5 restarts {restarts:.3f}" + note))
    large = accuracy["pgd_eps_1"]
    status = WARN if large > large_eps_ceiling else PASS
    checks.append(_check("large_eps", status,
                         f"PGD at eps=1 (any image reachable): accuracy {large:.3f}"
                         + (f" > {large_eps_ceiling:.0%}: the attack cannot follow the "
                            "gradients even without a budget" if status == WARN else "")))
    return checks


def audit(records, model=None, x=None, y=None, eps=None, num_steps=10, num_examples=200,
          batch_size=256, alpha=0.05, seed=0):
    """Runs every check that the given inputs allow.

    Args:
        records: Result records of `evaluation.evaluate_model` (any threat model).
        model: The evaluated model; enables the logits, gradient and probe checks.
        x, y: Test points for the model checks (the first ``num_examples``).
        eps: Radius of the probes; default: the largest eps in ``records``.
        num_steps: ``k`` of the PGD-k probes.
        alpha: Level of the binomial tests that tell a difference from noise.

    Returns:
        A list of ``{"check", "status", "detail"}`` dicts.
    """
    checks = [check_bounds(records), check_gradient_free_vs_white_box(records, alpha)]
    if model is not None and x is not None:
        x = np.asarray(x[:num_examples], np.float32)
        y = np.asarray(y[:num_examples]).astype("int32")
        checks.append(check_logits(model, x, batch_size))
        checks.append(check_gradients(model, x, y, batch_size))
        if eps is None:
            eps_values = [float(r["eps"]) for r in records if float(r["eps"]) > 0]
            eps = max(eps_values) if eps_values else None
        if eps is not None:
            accuracy, _ = run_probes(model, x, y, eps, num_steps, batch_size, seed)
            checks.extend(check_probes(accuracy, num_steps, eps, len(y), alpha))
    return checks


def format_audit(checks):
    """One line per check: ``PASS  name: detail``."""
    return "\n".join(f"{c['status']:<4}  {c['check']}: {c['detail']}" for c in checks)


def has_failure(checks):
    return any(c["status"] == FAIL for c in checks)
