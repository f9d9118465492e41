"""Attack rows: the attacked model, attack throughput against ART's, and the
evaluation cost (wall time and passes per image) of the evaluation suite."""

import statistics
import time

from . import rows_train, timing, variants, workloads
from .counting import CountingModel


def row_prepare(cfg, row):
    """PGD-trains (package ``pat``, Adam 3e-3) the model the attack rows attack,
    and saves its weights."""
    classifier, stages = workloads.build_classifier(cfg)
    train_ds, *_ = workloads.load_data(cfg)
    model = variants.compiled_model(cfg, classifier, stages, "pat", learning_rate=3e-3)
    if cfg["prepare_epochs"]:
        model.fit(train_ds, epochs=cfg["prepare_epochs"], steps_per_epoch=cfg["steps_per_epoch"],
                  verbose=0)
    classifier.save_weights(row["path"])
    return {"path": row["path"], "epochs": cfg["prepare_epochs"]}


def our_attack(cfg, name):
    """Our attack of a row name (attacks and evalcost sections)."""
    from atalp_keras import attacks

    eps, seed = cfg["eps"], cfg["seed"]
    if name == "fgsm":
        return attacks.FGSMAttack(eps)
    if name in ("pgd20", "pgd20-nors", "pgd"):
        return attacks.PGDAttack(eps, step_size=2.5 * eps / 20, num_steps=20,
                                 random_start=name != "pgd20-nors", seed=seed)
    if name == "apgd-ce":
        return attacks.get_attack("apgd-ce", eps=eps, num_steps=100, restarts=1, seed=seed)
    if name == "rays":
        return attacks.get_attack("rays", eps=eps, n_queries=cfg["rays_queries"], seed=seed)
    if name.startswith("autoattack"):
        version = name.split("-", 1)[1] if "-" in name else "standard"
        return attacks.get_attack("autoattack", eps=eps, version=version, seed=seed)
    raise ValueError(f"Unknown attack row {name!r}")


def art_attack(art, cfg, name):
    """ART's counterpart of a row name, or None where ART has none (RayS)."""
    import numpy as np
    from art.attacks.evasion import (AutoAttack, AutoProjectedGradientDescent,
                                     FastGradientMethod, ProjectedGradientDescent)

    eps, batch = cfg["eps"], cfg["attack_batch"]
    if name == "fgsm":
        return FastGradientMethod(art, norm=np.inf, eps=eps, eps_step=eps, batch_size=batch)
    if name in ("pgd20", "pgd20-nors", "pgd"):
        return ProjectedGradientDescent(art, norm=np.inf, eps=eps, eps_step=2.5 * eps / 20,
                                        max_iter=20, num_random_init=int(name != "pgd20-nors"),
                                        batch_size=batch, verbose=False)
    if name == "apgd-ce":
        return AutoProjectedGradientDescent(art, norm=np.inf, eps=eps, eps_step=2 * eps,
                                            max_iter=100, nb_random_init=1, batch_size=batch,
                                            loss_type="cross_entropy", verbose=False)
    if name in ("autoattack-standard", "autoattack"):
        # ART's default list: APGD-CE and APGD-DLR (100 steps, 5 restarts each),
        # DeepFool, Square (5000 queries, 5 restarts).
        return AutoAttack(art, norm=np.inf, eps=eps, eps_step=2 * eps, batch_size=batch)
    if name == "autoattack-fast":
        # The nearest ART ensemble to ours (APGD-CE + APGD-T): APGD-CE then
        # APGD-DLR, 100 steps and one start each.
        components = [AutoProjectedGradientDescent(
            art, norm=np.inf, eps=eps, eps_step=2 * eps, max_iter=100, nb_random_init=1,
            batch_size=batch, loss_type=loss, verbose=False)
            for loss in ("cross_entropy", "difference_logits_ratio")]
        return AutoAttack(art, norm=np.inf, eps=eps, eps_step=2 * eps, attacks=components,
                          batch_size=batch)
    return None


def _attacked_model(cfg, row):
    import atalp_keras as ak

    if row.get("model_path"):
        return ak.load_model(row["model_path"], compile=False)  # registers the backbone layers
    classifier, _ = workloads.build_classifier(cfg)
    classifier.load_weights(row["weights"])
    return classifier


def _runner(cfg, row, model, x, y):
    """``(run() -> x_adv, warm_up())`` for our attack or ART's, or None."""
    batch = cfg["attack_batch"]
    if row["library"] == "ours":
        attack = our_attack(cfg, row["attack"])
        jit = bool(row.get("jit"))
        return (lambda: attack.perturb(model, x, y, batch_size=batch, jit_compile=jit),
                lambda: attack.perturb(model, x[:8], y[:8], batch_size=batch, jit_compile=jit))
    attack = art_attack(rows_train.art_classifier(model, cfg), cfg, row["attack"])
    if attack is None:
        return None
    return (lambda: attack.generate(x, y=y)), (lambda: attack.generate(x[:8], y=y[:8]))


def _accuracy(classifier, x, y):
    import numpy as np

    logits = classifier.predict(x, batch_size=256, verbose=0)
    return float(np.mean(np.argmax(logits, -1) == y))


def row_attack(cfg, row):
    """Wall time, images/s, robust accuracy and passes per image of one attack on
    the first N test points (after a traced warm-up on 8 points)."""
    import numpy as np

    classifier = _attacked_model(cfg, row)
    *_, x_test, y_test, _ = workloads.load_data(cfg)
    n = row.get("points", cfg["attack_points"])
    x, y = x_test[:n], y_test[:n]
    counted = CountingModel(classifier)
    runner = _runner(cfg, row, counted, x, y)
    if runner is None:
        return {"not_available": True}
    run, warm_up = runner
    warm_up()
    setup = timing.rss_mb()
    times, passes = [], None
    while True:
        counted.reset()
        start = time.perf_counter()
        x_adv = np.asarray(run(), dtype=np.float32)
        times.append(time.perf_counter() - start)
        passes = passes or {k.replace("_images", "_per_image"): v / n
                            for k, v in counted.counts().items()}
        if len(times) >= row.get("max_runs", 3) or sum(times) > cfg["attack_seconds"]:
            break
    median = statistics.median(times)
    return {"points": n, "seconds": median, "runs": len(times), "images_per_second": n / median,
            "robust_accuracy": _accuracy(classifier, x_adv, y),
            "clean_accuracy": _accuracy(classifier, x, y),
            "max_linf": float(np.max(np.abs(x_adv - x))), "rss_setup_mb": setup, **passes}
