"""The printed (Markdown) tables of a benchmark summary."""


def fmt(value, spec=".1f"):
    """``-`` for a missing value, yes/NO for a bool, else ``format(value, spec)``."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    return format(value, spec)


def table(header, rows):
    """A Markdown table: the first column left-aligned, the others right."""
    lines = ["| " + " | ".join(header) + " |",
             "| --- |" + " ---: |" * (len(header) - 1)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def units_lines(units):
    out = [f"Unit costs, batch {int(units['batch_size'])} ({int(units['params']):,} weights), "
           "ms (no XLA / XLA):"]
    for key, label in (("t_forward", "forward (inference)"),
                       ("t_grad", "forward + input gradient (one attack step)"),
                       ("t_train", "training step, B"), ("t_train2", "training step, 2B")):
        out.append(f"  {label:<45} {1e3 * units[key]:8.2f} / {1e3 * units[key + '_xla']:8.2f}")
    out.append(f"  input pipeline alone: {units['input_pipeline_images_per_second']:,.0f} img/s")
    return out + [""]


def costmodel_lines(cost):
    out = [f"Cost model: {cost['macs_per_image'] / 1e6:,.2f} M MACs per image forward "
           f"({cost['params']:,} weights)."]
    rows = [[name, p["input_grad"], p["forward"], p["train"], fmt(p["forward_equivalents"], ".0f"),
             fmt(p["gflops_per_image"], ".4f")] for name, p in cost["passes"].items()]
    out += table(["preset", "attack passes (fwd + input grad)", "extra forwards",
                  "training passes", "forward-equivalents", "GFLOP per image"], rows)
    return out + [""]


def steps_lines(steps):
    ms, ref = steps["ms_per_step"], steps["ms_per_step"].get("reference")
    out = [f"Compiled train_step alone, one process, round-robin ({int(steps['rounds'])} rounds), "
           "ms per step (vs reference):"]
    for name, value in ms.items():
        out.append(f"  {name:<45} {value:8.2f}" + (f"  ({value / ref:.2f}x)" if ref else ""))
    return out + [""]


def epochs_lines(epochs):
    rows = [[e["variant"], fmt(e["images_per_second"], ",.0f"),
             fmt(e.get("time_vs_standard"), ".2f"), fmt(e.get("throughput_vs_reference"), ".2f"),
             fmt(e.get("measured_vs_cost_model"), ".2f"), fmt(e.get("rss_growth_mb"), ",.0f")]
            for e in epochs]
    return table(["interleaved epochs (one process)", "img/s", "time vs standard",
                  "vs reference", "measured / cost model", "RSS growth MB"], rows) + [""]


def train_lines(train):
    rows = []
    for e in train:
        if e.get("error"):
            rows.append([e["id"], f"error: {e['error']}", "", "", "", ""])
            continue
        rows.append([e["id"], fmt(e["images_per_second"], ",.0f"),
                     fmt(e.get("time_vs_standard"), ".2f"),
                     fmt(e.get("throughput_vs_reference"), ".2f"),
                     fmt(e.get("measured_vs_cost_model"), ".2f"),
                     f"{fmt(e['peak_rss_mb'], ',.0f')} ({fmt(e['rss_setup_mb'], ',.0f')})"])
    return table(["training row (own process)", "img/s", "time vs standard", "vs reference",
                  "measured / cost model", "peak RSS MB (after setup)"], rows) + [""]


def attack_lines(attacks):
    rows = []
    for e in attacks:
        if e.get("not_available") or e.get("error"):
            rows.append([e["id"], e.get("error") or "not available"] + [""] * 8)
            continue
        rows.append([e["id"], e["points"], fmt(e["seconds"], ".2f"),
                     fmt(e["images_per_second"], ",.1f"), fmt(e.get("forward_per_image"), ".1f"),
                     fmt(e.get("gradient_per_image"), ".1f"), fmt(e["robust_accuracy"], ".3f"),
                     fmt(e.get("speedup_vs_art"), ".1f"), fmt(e.get("art_robust_accuracy"), ".3f"),
                     fmt(e["peak_rss_mb"], ",.0f")])
    return table(["attack row", "points", "seconds", "img/s", "forwards / image",
                  "input grads / image", "robust acc", "speed vs ART", "ART robust acc",
                  "peak RSS MB"], rows) + [""]


def target_lines(targets):
    rows = [[t["target"] + (f" ({t['detail']})" if t["detail"] else ""), fmt(t["value"], ".3f"),
             t["threshold"], fmt(t["holds"])] for t in targets]
    return table(["target", "value", "wanted", "holds"], rows)


def format_tables(summary):
    """Every section present in ``summary`` as text."""
    out = []
    if summary.get("costmodel") and "error" not in summary["costmodel"]:
        out += costmodel_lines(summary["costmodel"])
    if summary.get("units"):
        out += units_lines(summary["units"])
    if (summary.get("steps") or {}).get("ms_per_step"):
        out += steps_lines(summary["steps"])
    if summary.get("epochs"):
        out += epochs_lines(summary["epochs"])
    if summary.get("train"):
        out += train_lines(summary["train"])
    if summary.get("attacks"):
        out += attack_lines(summary["attacks"])
    if summary.get("targets"):
        out += target_lines(summary["targets"])
    return "\n".join(out)
