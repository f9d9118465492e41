"""Derived ratios, the issue's target checks and the printed tables."""

import itertools
import os
import platform
from importlib import metadata

from . import costmodel

# Issue 11's targets (ratios measured in one process).
PAT_VS_REFERENCE = 1.0      # pat throughput / the hand-written loop's
AT_ALP_VS_PAT = 1.15        # at_alp epoch time / pat's
PAT_VS_ART_TRAINER = 20.0
ATTACK_VS_ART = 5.0
AUTOATTACK_VS_ART = 10.0


def _variant_row(variant):
    """``(method, xla_attack, xla_train)`` of a variant name such as ``pat+xla``."""
    method, _, option = variant.partition("+")
    return ("pat" if method in ("art",) else method), option == "xla", option == "xla"


def predicted(units, cfg, method, xla_attack=False, xla_train=False):
    """Cost-model seconds per batch for a method, or None without unit costs."""
    if not units:
        return None
    passes = costmodel.training_passes(method, cfg["pgd_steps"])
    return costmodel.predicted_batch_seconds(passes, units, xla_attack, xla_train)


def _ratios(entry, value, standard, ref, model_seconds, batch):
    if standard:
        entry["time_vs_standard"] = standard / value
    if ref:
        entry["throughput_vs_reference"] = value / ref
    if model_seconds:
        entry["measured_vs_cost_model"] = batch / value / model_seconds
    return entry


def summarize_epochs(results, units, cfg):
    epochs = (results.get("epochs") or {})
    ips = epochs.get("images_per_second", {})
    memory = epochs.get("rss_growth_mb", {})
    rows = []
    for variant, value in ips.items():
        method, xla_attack, xla_train = _variant_row(variant)
        entry = {"variant": variant, "images_per_second": value,
                 "rss_growth_mb": memory.get(variant)}
        rows.append(_ratios(entry, value, ips.get("standard"), ips.get("reference"),
                            predicted(units, cfg, method, xla_attack, xla_train),
                            cfg["batch_size"]))
    return rows


def summarize_train(rows, results, units, cfg):
    def ips(row_id):
        return results.get(row_id, {}).get("images_per_second")

    out = []
    for row in rows:
        if row["kind"] not in ("preset", "reference", "art_trainer"):
            continue
        res = results.get(row["id"], {})
        entry = {"id": row["id"], "images_per_second": res.get("images_per_second"),
                 "peak_rss_mb": res.get("peak_rss_mb"), "rss_setup_mb": res.get("rss_setup_mb"),
                 "error": res.get("error")}
        if entry["images_per_second"]:
            jit = row.get("jit", "none")
            method = row.get("method", "pat")
            model_seconds = predicted(units, cfg, method if row["kind"] == "preset" else
                                      ("reference" if row["kind"] == "reference" else "pat"),
                                      jit in ("step", "attack"), jit == "step")
            _ratios(entry, entry["images_per_second"], ips("train/standard"),
                    ips("train/reference"), model_seconds, cfg["batch_size"])
        out.append(entry)
    return out


def summarize_attacks(rows, results):
    out = []
    for row in rows:
        if row["kind"] != "attack":
            continue
        res = results.get(row["id"], {})
        entry = {"id": row["id"], **{k: res.get(k) for k in (
            "points", "seconds", "images_per_second", "robust_accuracy", "clean_accuracy",
            "max_linf", "forward_per_image", "gradient_per_image", "peak_rss_mb", "error",
            "not_available")}}
        if row["library"] == "ours" and not row.get("jit"):
            art = results.get(row["id"].replace("/ours/", "/art/"), {})
            if art.get("images_per_second") and res.get("images_per_second") \
                    and art.get("points") == res.get("points"):
                entry["speedup_vs_art"] = res["images_per_second"] / art["images_per_second"]
                entry["art_robust_accuracy"] = art.get("robust_accuracy")
        out.append(entry)
    return out


def check_targets(results, attack_rows):
    """The issue's targets that this run's numbers can decide."""
    targets = []

    def target(name, value, threshold, holds, detail=""):
        if value is not None:
            targets.append({"target": name, "value": value, "threshold": threshold,
                            "holds": bool(holds), "detail": detail})

    epochs = (results.get("epochs") or {}).get("images_per_second", {})
    steps = (results.get("steps") or {}).get("ms_per_step", {})
    # Steps are ms per step: as rates (1 / ms) they compare like epochs' img/s.
    rates = {"interleaved epochs": epochs,
             "compiled step alone": {k: 1.0 / v for k, v in steps.items() if v}}
    for (where, rate), (suffix, label) in itertools.product(
            rates.items(), (("", ""), ("+xla", ", both XLA"))):
        pat, ref, at_alp = (rate.get(v + suffix) for v in ("pat", "reference", "at_alp"))
        if pat and ref:
            target(f"pat / reference loop, {where}{label}", pat / ref,
                   f">= {PAT_VS_REFERENCE}", pat / ref >= PAT_VS_REFERENCE)
        if pat and at_alp:
            target(f"at_alp / pat time, {where}{label}", pat / at_alp,
                   f"<= {AT_ALP_VS_PAT}", pat / at_alp <= AT_ALP_VS_PAT)
    if epochs.get("pat") and epochs.get("art"):
        value = epochs["pat"] / epochs["art"]
        target("pat / ART AdversarialTrainerMadryPGD, interleaved", value,
               f">= {PAT_VS_ART_TRAINER}", value >= PAT_VS_ART_TRAINER)
    for entry in attack_rows:
        if "speedup_vs_art" in entry:
            wanted = AUTOATTACK_VS_ART if "autoattack" in entry["id"] else ATTACK_VS_ART
            ours, art = entry["robust_accuracy"], entry["art_robust_accuracy"]
            target(f"{entry['id']} speed / ART's", entry["speedup_vs_art"],
                   f">= {wanted} at robust acc <= ART's",
                   entry["speedup_vs_art"] >= wanted and ours <= art,
                   f"robust accuracy ours {ours:.3f} vs ART {art:.3f}")
    return targets


def summarize(rows, results, cfg):
    units = results.get("units")
    units = units if units and "error" not in units else None
    attack_rows = summarize_attacks(rows, results)
    return {"units": units, "costmodel": results.get("costmodel"), "steps": results.get("steps"),
            "epochs": summarize_epochs(results, units, cfg),
            "train": summarize_train(rows, results, units, cfg),
            "attacks": attack_rows, "targets": check_targets(results, attack_rows)}


def machine_info():
    """CPU, software versions and commit of this run."""
    from atalp_keras.artifacts import git_commit

    cpu = "unknown"
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f
                        if ln.startswith("model name")), cpu)
    versions = {}
    for package in ("tensorflow-cpu", "tensorflow", "keras", "jax", "jaxlib",
                    "adversarial-robustness-toolbox", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return {"nproc": os.cpu_count(), "cpu_model": cpu, "python": platform.python_version(),
            "platform": platform.platform(), "versions": versions, "git_commit": git_commit(),
            "gpu": "none (CPU only)", "loadavg": os.getloadavg()}
