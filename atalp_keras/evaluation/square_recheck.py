"""Are the images AutoAttack's Square stage broke out of the gradient attacks'
reach, or only beyond their budget?

Square runs last in standard AutoAttack, only on the images APGD-CE, APGD-T
and FAB-T left correct, and reads nothing but the model's outputs. Every image
it breaks is one the gradient stages missed. Two explanations differ in what
they mean for the defense:

- the gradient attacks were under-converged: more restarts and steps find
  those images too, and AutoAttack's number (which counts Square) stands;
- the gradients mislead (gradient masking): stronger gradient attacks still
  miss them, and any gradient-only number of this model overstates it.

`recheck` attacks the clean images Square broke again with budgets far beyond
AutoAttack's (APGD-CE, APGD-DLR and APGD-T, several restarts of many steps),
and, as a control, as many images every AutoAttack stage left correct: how
often the stronger attacks break an image that held. The images come from an
AutoAttack resume file (``AutoAttack(..., resume_file=...)``), which keeps
the stage that broke each image.
"""

import json

import numpy as np

from atalp_keras import artifacts
from atalp_keras.attacks import APGDAttack, APGDTAttack
from atalp_keras.attacks.autoattack import inside_ball
from atalp_keras.attacks.batching import predict_classes
from atalp_keras.errors import UsageError

SQUARE = "square"
# Standard AutoAttack's stages before Square (atalp_keras.attacks.autoattack).
BEFORE_SQUARE = ("apgd-ce", "apgd-t", "fab-t")


def read_state(path):
    """What an AutoAttack resume file says of each image.

    Returns:
        A dict of per-image arrays: ``clean`` (correct before any attack),
        ``robust`` (correct after every finished stage), ``broken_by`` (the
        stage that broke it, "" if none) and ``square_done`` (Square attacked
        it and finished: False for images a stopped Square stage had not
        reached yet, and for all images before Square).
    """
    try:
        with np.load(path, allow_pickle=False) as saved:
            state = {key: saved[key].copy() for key in ("clean", "robust", "broken_by")}
            pending = saved["pending"].copy() if "pending" in saved.files else None
            finished = [entry["component"] for entry in json.loads(str(saved["report"]))][1:]
    except (OSError, ValueError, KeyError) as error:
        raise UsageError(f"Not an AutoAttack resume file ({type(error).__name__}: {error}). "
                         f"Received: {path}") from None
    if SQUARE in finished:
        square_done = np.ones(len(state["clean"]), bool)
    elif pending is not None and tuple(finished) == BEFORE_SQUARE:
        square_done = ~pending  # Square stopped between pieces: the pieces it finished
    else:
        square_done = np.zeros(len(state["clean"]), bool)
    # Attacked by Square to the end: correct when it started, in a finished piece.
    state["square_done"] = square_done & (state["robust"] | (state["broken_by"] == SQUARE))
    return state


def attack_labels(num_steps=500, restarts=5, n_target_classes=9):
    """The names `stronger_attacks` gives its attacks, budgets included."""
    return [f"apgd-ce {restarts}x{num_steps}", f"apgd-dlr {restarts}x{num_steps}",
            f"apgd-t {n_target_classes} targets x{num_steps}"]


def stronger_attacks(eps, num_steps=500, restarts=5, n_target_classes=9, seed=0):
    """Gradient attacks with far more than AutoAttack's budget (one restart
    of 100 steps per attack): ``[(label, attack)]``, labelled by
    `attack_labels` (same defaults)."""
    attacks = [
        APGDAttack(eps, num_steps=num_steps, restarts=restarts, loss="ce", seed=seed),
        APGDAttack(eps, num_steps=num_steps, restarts=restarts, loss="dlr", seed=seed),
        APGDTAttack(eps, num_steps=num_steps, n_target_classes=n_target_classes, seed=seed),
    ]
    return list(zip(attack_labels(num_steps, restarts, n_target_classes), attacks))


def choose_images(state, control=None, seed=0):
    """The images Square broke, and a seeded random control of as many (or
    ``control``) images that every stage, Square included, left correct."""
    broken = np.flatnonzero(state["broken_by"] == SQUARE)
    held = np.flatnonzero(state["robust"] & state["square_done"])
    count = len(broken) if control is None else int(control)
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(held, size=min(count, len(held)), replace=False))
    return broken, chosen


def made_from(path, state, eps, attacks, seed=0, control=None):
    """Whether the recheck written to ``path`` is this one: made from the
    images Square broke in ``state`` (`read_state`) when Square had attacked
    as many points as now, and the control `choose_images` draws for
    ``control`` and ``seed``, at ``eps`` with the same ``attacks`` (labels,
    which name their budgets) and ``seed``. False for a missing or unreadable
    file, or one made while Square was still going, before the model was
    evaluated again, or with other settings."""
    try:
        saved = artifacts.read_json(path)
        made = (saved["square"]["images"], saved["control"]["images"],
                saved["square_attacked"], float(saved["eps"]), list(saved["attacks"]),
                saved.get("seed", 0))
    except (OSError, ValueError, KeyError, TypeError):
        return False
    images, control_images, attacked, saved_eps, saved_attacks, saved_seed = made
    broken, chosen = choose_images(state, control, seed)
    return (attacked == int(state["square_done"].sum())
            and np.array_equal(np.asarray(images, dtype=np.int64), broken)
            and np.array_equal(np.asarray(control_images, dtype=np.int64), chosen)
            and abs(saved_eps - float(eps)) < 1e-9 and saved_attacks == list(attacks)
            and saved_seed == seed)


def recheck(model, x, y, state, eps, attacks, control=None, batch_size=256, seed=0,
            echo=print):
    """Attacks Square's images and the control again with ``attacks``.

    Args:
        model: The logits model AutoAttack evaluated.
        x, y: The evaluated images and labels, in AutoAttack's order.
        state: `read_state` of its resume file.
        eps: The radius AutoAttack used.
        attacks: ``[(label, attack)]``, e.g. `stronger_attacks`.
        control: Number of control images (default: as many as Square broke).

    Returns:
        A dict: ``square`` and ``control`` each with ``n`` and, per attack
        label and for ``"any"``, the number of images broken.

    Raises:
        UsageError: If ``x``/``y`` are not the images of the file (another
            count, or other clean predictions).
    """
    if len(x) != len(state["clean"]):
        raise UsageError(f"The resume file holds {len(state['clean'])} images; the data has "
                         f"{len(x)}. Pass the same --num_examples as the AutoAttack run.")
    clean = predict_classes(model, x, batch_size) == y
    if not np.array_equal(clean, state["clean"]):
        raise UsageError(
            f"The model's clean predictions differ from the file's on "
            f"{int(np.sum(clean != state['clean']))} images: another model, data or order "
            "than the AutoAttack run's.")
    result = {}
    for group, idx in zip(("square", "control"), choose_images(state, control, seed)):
        entry = {"n": int(len(idx)), "images": idx.tolist()}
        any_broken = np.zeros(len(idx), bool)
        for label, attack in attacks:
            if len(idx) == 0:
                entry[label] = 0
                continue
            x_adv = attack.perturb(model, x[idx], y[idx], batch_size)
            broken = ((predict_classes(model, x_adv, batch_size) != y[idx])
                      & inside_ball(x_adv, x[idx], eps))
            entry[label] = int(broken.sum())
            any_broken |= broken
            echo(f"{group}: {label} broke {int(broken.sum())} of {len(idx)}")
        entry["any"] = int(any_broken.sum())
        result[group] = entry
    return result
