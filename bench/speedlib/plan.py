"""Which rows run, in which order, and running one in a fresh Python process.

Every row runs in its own interpreter so that its peak memory is its own and
no row inherits another's traced functions, XLA caches or allocator state.
"""

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULT_TAG = "@@RESULT@@"
BENCH_DIR = Path(__file__).resolve().parents[1]
REPO = BENCH_DIR.parent
REPEATED_KINDS = ("units", "steps", "epochs", "preset", "reference", "art_trainer")
LEVER_STEPS = ["pat+no_clean", "pat+no_validate", "at_alp+two_pass", "at_alp+split", "pat+xla", "at_alp+xla",
               "reference+xla"]


def _lever_epochs(spe):
    return ["pat+xla", "reference+xla", f"pat+spe{spe}", "pat+no_clean", "pat+no_validate", "at_alp+two_pass",
            "at_alp+split", "at_alp+xla"]


def _lever_train_rows(spe):
    def preset(id_, method, **extra):
        return {"id": f"train/{id_}", "kind": "preset", "method": method, **extra}
    return [
        preset("pat+xla_step", "pat", jit="step"), preset("pat+xla_attack", "pat", jit="attack"),
        {"id": "train/reference+xla_step", "kind": "reference", "jit": "step"},
        preset(f"pat+spe{spe}", "pat", steps_per_execution=spe),
        preset(f"pat+xla_step+spe{spe}", "pat", jit="step", steps_per_execution=spe),
        preset("pat-validate", "pat", validate_inputs=False),
        preset("at_alp+xla_step", "at_alp", jit="step"),
        preset("at_alp+xla_attack", "at_alp", jit="attack"),
        preset("at_alp+two_pass", "at_alp", paired="two_pass"),
        preset("at_alp+split", "at_alp", paired="split"),
        preset("pat+mixed_float16", "pat", policy="mixed_float16"),
        preset("pat+mixed_bfloat16", "pat", policy="mixed_bfloat16"),
    ]


def _train_rows(cfg):
    rows = []
    for jit in cfg["jits"]:
        suffix = "" if jit == "none" else f"+xla_{jit}"
        for method in cfg["presets"]:
            if not (method == "standard" and jit == "attack"):
                rows.append({"id": f"train/{method}{suffix}", "kind": "preset", "method": method,
                             "jit": jit})
        if jit in ("none", "step"):
            rows.append({"id": f"train/reference{suffix}", "kind": "reference", "jit": jit})
    if cfg["levers"]:
        have = {r["id"] for r in rows}
        rows += [r for r in _lever_train_rows(cfg["spe"]) if r["id"] not in have]
    if cfg["art"]:
        rows.append({"id": "train/art_madry_pgd", "kind": "art_trainer"})
    return rows


def _attack_rows(cfg, weights):
    rows = []
    for name in cfg["attacks"]:
        base = {"kind": "attack", "attack": name, "weights": weights}
        points = cfg["art_autoattack_points"] if name.startswith("autoattack") else None
        tail = f"@{points}" if points else ""
        extra = {"points": points} if points else {}
        ours = {"id": f"attack/ours/{name}{tail}", "library": "ours", **base, **extra}
        rows.append(ours)
        if cfg["levers"] and name in ("fgsm", "pgd20"):
            rows.append({**ours, "id": ours["id"] + "+xla", "jit": True})
        if cfg["art"]:
            rows.append({"id": f"attack/art/{name}{tail}", "library": "art", **base, **extra})
    return rows


def _evalcost_rows(cfg, weights):
    rows = []
    for name in cfg["eval_attacks"]:
        base = {"kind": "attack", "attack": name, "weights": weights,
                "model_path": cfg["eval_model"], "points": cfg["eval_points"], "max_runs": 1}
        rows.append({"id": f"eval/ours/{name}", "library": "ours", **base})
        if cfg["art"] and name != "rays":   # ART has no RayS
            rows.append({"id": f"eval/art/{name}", "library": "art", **base})
    return rows


def plan_rows(cfg, work_dir):
    """The rows to run, in order, for a resolved configuration."""
    rows, sections = [], set(cfg["sections"])
    presets = list(cfg["presets"])
    if "costmodel" in sections or "units" in sections:
        rows.append({"id": "costmodel", "kind": "costmodel"})
    if "units" in sections:
        rows.append({"id": "units", "kind": "units"})
    if "steps" in sections:
        variants = presets + ["reference"] + (LEVER_STEPS if cfg["levers"] else [])
        rows.append({"id": "steps", "kind": "steps", "variants": variants})
    if "epochs" in sections:
        variants = presets + ["reference"] + (_lever_epochs(cfg["spe"]) if cfg["levers"] else [])
        variants += ["art"] if cfg["art"] else []
        rows.append({"id": "epochs", "kind": "epochs", "variants": variants})
    if "train" in sections:
        rows += _train_rows(cfg)
    weights = str(Path(work_dir) / "attacked.weights.h5")
    needs_model = "attacks" in sections or ("evalcost" in sections and not cfg["eval_model"])
    if needs_model:
        rows.append({"id": "prepare", "kind": "prepare", "path": weights})
    if "attacks" in sections:
        rows += _attack_rows(cfg, weights)
    if "evalcost" in sections:
        rows += _evalcost_rows(cfg, weights)
    return rows


def schedule(rows, repeats):
    """Run order: the repeated kinds ``repeats`` times in turn (A B C A B C), then the rest."""
    repeated = [row for row in rows if row["kind"] in REPEATED_KINDS]
    return repeated * repeats + [row for row in rows if row["kind"] not in REPEATED_KINDS]


def _median_or_first(values):
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return statistics.median(values)
    return values[0]


def merge_runs(runs):
    """One result from repeated runs of a row: the median of every number (the
    maximum for peak memory), numbers in a dict likewise; the first run's other fields."""
    good = [r for r in runs if "error" not in r]
    if not good:
        return runs[0]
    merged = dict(good[0])
    for key, value in good[0].items():
        values = [r.get(key) for r in good]
        if key == "peak_rss_mb":
            merged[key] = max(values)
        elif isinstance(value, dict) and all(isinstance(v, dict) for v in values):
            merged[key] = {k: _median_or_first([v.get(k) for v in values]) for k in value}
        elif not isinstance(value, (dict, list)):
            merged[key] = _median_or_first(values)
    if len(runs) > 1:
        merged["repeats"] = len(good)
        merged["repeat_images_per_second"] = [r.get("images_per_second") for r in good]
        merged["repeat_loadavg_1min_before"] = [r.get("loadavg_1min_before") for r in good]
    return merged


def run_row(cfg, row, timeout):
    """Runs one row in a fresh interpreter (``python -m speedlib.child``)."""
    payload = json.dumps({"cfg": cfg, "row": row})
    env = os.environ.copy()
    env["PYTHONPATH"] = os.pathsep.join(
        [str(BENCH_DIR), str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    if row.get("library") == "art":
        # ART computes gradients eagerly; TF 2.21's eager oneDNN Conv2D filter
        # gradient segfaults there on the fmnist backbone (ART's APGD died at
        # its first step, exit code -11). Its rows run with oneDNN off.
        env["TF_ENABLE_ONEDNN_OPTS"] = "0"
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", "speedlib.child", payload],
                              capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    wall = time.perf_counter() - start
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_TAG)]
    if proc.returncode != 0 or not lines:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        return {"error": f"exit code {proc.returncode}", "stderr_tail": tail,
                "process_wall_seconds": wall}
    result = json.loads(lines[-1][len(RESULT_TAG):])
    result.update(process_wall_seconds=wall, loadavg_1min_before=load_before,
                  onednn=env.get("TF_ENABLE_ONEDNN_OPTS") != "0",
                  loadavg_1min_after=os.getloadavg()[0])
    return result
