"""The reproduction in order: sweep, training (main models and sources, at
every training radius), evaluation, figures, report. Every step reuses what
an earlier invocation finished."""

import dataclasses
import os
import time

import numpy as np

from atalp_keras import artifacts
from atalp_keras.reproduction import evaluate, figures, models, report
from atalp_keras.reproduction.common import log, save_json
from atalp_keras.reproduction.stats import Stat


def load_data(s):
    """``(info, (x, y) attacked, (x, y) all test or None)``."""
    from atalp_keras import evaluation

    r = s.recipe
    kwargs = dict(data_dir=r.get("data_dir"), image_size=r.get("image_size"),
                  data_seed=r.get("data_seed", 0))
    x, y, info = evaluation.load_test_arrays(r["dataset"], num_examples=s.num_test,
                                             seed=kwargs["data_seed"], **kwargs)
    full = None
    if s.num_test and s.num_test < info.num_test:
        xs, ys, _ = evaluation.load_test_arrays(r["dataset"], **kwargs)
        full = (xs.astype(np.float32), ys.astype(np.int32))
    return info, (x.astype(np.float32), y.astype(np.int32)), full


def plan(s):
    """``[(eps, [methods], sources?)]``: the main radius, then --also_eps."""
    runs = [(s.eps, list(s.methods), True)]
    runs += [(float(e), list(s.also_eps_methods), False) for e in s.also_eps]
    return runs


def needs_sweep(s):
    """Whether a model of the plan trains with swept weights (at, at_alp): a
    main model, or the shared black-box source of ``--blackbox_method``."""
    trained = {m for _, ms, _ in plan(s) for m in ms}
    if s.transfer and s.blackbox_method and any(
            s.has_sources(m) for _, ms, sources in plan(s) if sources for m in ms):
        trained.add(s.blackbox_method)
    return s.sweep and bool({"at", "at_alp"} & trained)


def _training_row(metrics):
    w = metrics["main"][0]["training"]["loss_weights"]
    return {"weights": "/".join(f"{w.get(k, 0.0):g}" for k in (
                "natural_weight", "adv_weight", "alp_weight", "at_weight", "trades_beta")),
            "steady": [models.epoch_seconds(m)[1] for m in metrics["main"]],
            "first": [models.epoch_seconds(m)[0] for m in metrics["main"]],
            "clean": Stat([m["test"]["accuracy"] for m in metrics["main"]],
                          metrics["main"][0]["test"]["n"])}


def train_and_evaluate(s, info, test, full, eps, methods, with_sources, chosen, ledger):
    """One training radius: returns the run dict the report reads."""
    x, y = test
    entries, training, audits, per_model = [], {}, {}, {}
    for method in methods:
        seeds = s.seeds_of(method) if with_sources else s.seeds[:1]
        sources = with_sources and s.transfer and s.has_sources(method)
        found, source_dirs, metrics = models.train_method(s, method, seeds, eps, chosen,
                                                          ledger, sources)
        training[method] = _training_row(metrics)
        for entry, m in zip(found, metrics["main"]):
            entry["train_seconds"] = models.training_seconds(m)
        entries += found
        if s.train_only:
            continue
        for entry in found:
            entry.update(out=s.out_for(eps), eval_eps=tuple(s.eval_eps) if with_sources
                         else (eps,), curve_eps=s.curve_eps if with_sources else ())
            result = evaluate.evaluate_main(s, entry, x, y, source_dirs[entry["name"]], info,
                                            ledger, full)
            per_model[entry["name"]] = evaluate.per_model_values(result, entry["eval_eps"])
            if "audit" in result["parts"]:
                audits[entry["name"]] = result["parts"]["audit"]["value"]
    return {"eps": eps, "n": len(y), "entries": entries, "training": training,
            "audits": audits, "agg": report.aggregate(
                [(e["method"], per_model[e["name"]]) for e in entries if e["name"] in per_model],
                methods, len(y)),
            "per_model": per_model}


def longer_study(s, info, test, full, chosen, ledger):
    """The --longer_epochs models: the first seed of each --longer_methods
    trained for more epochs, evaluated like a main model at the training eps
    (without transfer sources). Returns ``[{name, method, seed, epochs, values,
    test_curve, audit}]`` (empty without --longer_epochs or under --train_only;
    ``audit`` is None when the evaluation ran none)."""
    x, y = test
    rows = []
    for method in s.longer_methods if s.longer_epochs else ():
        seed = s.seeds_of(method)[0]
        model_dir = models.longer_dir(s, method, seed)
        metrics, _ = models.train_model(
            models.train_config(s, method, seed, model_dir, s.eps, epochs=s.longer_epochs,
                                **models.method_weights(method, chosen)),
            f"{method} seed {seed} ({s.longer_epochs} epochs)", ledger)
        if s.train_only:
            continue
        entry = {"name": f"{method}_epochs{s.longer_epochs}_seed{seed}", "method": method,
                 "seed": seed, "dir": model_dir, "eps": s.eps, "out": s.out_for(s.eps),
                 "eval_eps": (s.eps,), "curve_eps": ()}
        result = evaluate.evaluate_main(s, entry, x, y, {}, info, ledger, full)
        rows.append({"name": entry["name"], "method": method, "seed": seed,
                     "epochs": s.longer_epochs,
                     "n_all": len(full[1]) if full is not None else len(y),
                     "values": evaluate.per_model_values(result, (s.eps,)),
                     "audit": result["parts"].get("audit", {}).get("value"),
                     "train_seconds": models.training_seconds(metrics),
                     # Clean accuracy on the test set after each epoch (the
                     # training's monitoring; nothing is chosen on it).
                     "test_curve": [r.get("val_accuracy") for r in metrics.get("history", [])]})
    return rows


def run(s, argv, flags_text=""):
    """Runs the whole reproduction for `Settings` ``s``; returns the report
    path (None under ``--train_only``, which stops before the evaluation)."""
    from atalp_keras.reproduction import sweep as sweep_lib

    started, load_start = time.time(), os.getloadavg()[0]
    started_at = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    os.makedirs(s.out_for(s.eps), exist_ok=True)
    commit = artifacts.git_commit()
    artifacts.atomic_write_text(os.path.join(s.out_for(s.eps), artifacts.FLAGS_FILE),
                                f"# {argv[0]}, git commit {commit}\n{flags_text}")
    ledger, timings = {}, {}
    info, test, full = load_data(s)
    log(f"{info.name}: {info.num_train} training, {info.num_test} test images; attacking "
        f"{len(test[1])}; quick={s.quick}")
    t, sweep, chosen = time.time(), None, None
    if needs_sweep(s):
        sweep = sweep_lib.run_sweep(s, info, ledger)
        chosen = sweep["chosen"]
        log(f"sweep chose at_weight={chosen['at_weight']:g}, "
            f"alp_weight={chosen['alp_weight']:g}")
    timings["sweep"] = time.time() - t
    t, runs = time.time(), []
    for eps, methods, with_sources in plan(s):
        runs.append(train_and_evaluate(s, info, test, full, eps, methods, with_sources,
                                       chosen, ledger))
    longer = longer_study(s, info, test, full, chosen, ledger)
    timings["training and evaluation"] = time.time() - t
    if s.train_only:
        log(f"--train_only: {ledger.get('trained', 0)} models trained, "
            f"{ledger.get('reused', 0)} reused: every model of the plan is in place "
            f"({(time.time() - started) / 60:.1f} min); rerun without --train_only to evaluate")
        return None
    t = time.time()
    figs = figures.make_figures(s, info, *test, runs[0]["entries"], runs[0]["agg"])
    timings["figures"] = time.time() - t
    save_json(os.path.join(s.out_for(s.eps), "summary.json"), {
        "settings": dataclasses.asdict(s), "sweep": sweep, "runs": [
            {"eps": r["eps"], "n": r["n"], "aggregate": {
                m: {f"{k[0]}@{k[1]!r}": {"mean": v.mean, "std": v.std, "values": v.values}
                    for k, v in a.items()} for m, a in r["agg"].items()}} for r in runs],
        "longer": [dict(row, values={f"{k[0]}@{k[1]!r}": v for k, v in row["values"].items()})
                   for row in longer]})
    runs[0].update(ledger=ledger, timings=timings, started_at=started_at, commit=commit,
                   total=time.time() - started, load=(load_start, os.getloadavg()[0]),
                   longer=longer)
    path = report.write_report(s, info, runs, figs, sweep, argv, report.machine_info())
    log(f"report: {path} ({(time.time() - started) / 60:.1f} min)")
    return path
