"""Speed benchmark of atalp-keras against a hand-written loop and IBM ART.

Prints Markdown tables and writes JSON (every row, repeat and round, the load
average around each row, peak memory). Rows, timing and the cost model live
in ``bench/speedlib/``; docs/benchmarks.md explains the sections and holds the
measured results. Examples (from the repository root):

    python bench/speed.py --repeats 3                                # digits, all sections
    python bench/speed.py --quick                                    # smoke test
    python bench/speed.py --model fmnist --sections costmodel,epochs --nolevers --noart
    python bench/speed.py --model fmnist --data fashion_mnist --sections evalcost
    python bench/speed.py --helpshort                                # every flag
"""

import dataclasses
import datetime
import json
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]

from absl import flags  # noqa: E402

from atalp_keras.cli import common  # noqa: E402
from speedlib import config, plan, report, tables  # noqa: E402

common.define_flags(config.BenchSettings)
FLAGS = flags.FLAGS


def run_rows(cfg, rows, timeout):
    """Runs the rows in schedule order; returns ``{row id: merged result}``."""
    runs = {row["id"]: [] for row in rows}
    for row in plan.schedule(rows, cfg["repeats"]):
        result = plan.run_row(cfg, row, timeout)
        runs[row["id"]].append(result)
        shown = result.get("images_per_second")
        shown = shown if isinstance(shown, (int, float)) else None
        status = result.get("error") or ("not available" if result.get("not_available") else
                                         f"{shown:,.1f} img/s" if shown else "done")
        print(f"  {row['id']:<34} {status}  ({result.get('process_wall_seconds', 0):.0f} s, "
              f"load {result.get('loadavg_1min_before', float('nan')):.1f})", flush=True)
    return {row_id: plan.merge_runs(values) for row_id, values in runs.items()}


def main(argv):
    settings = common.dataclass_from_flags(config.BenchSettings, FLAGS)
    cfg = config.validate(config.resolve(settings))
    cfg["repeats"] = settings.repeats
    suffix = "_quick" if settings.quick else ""
    out = Path(settings.out) if settings.out else \
        plan.BENCH_DIR / "results" / f"speed_{settings.model}{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    work_dir = Path(tempfile.mkdtemp(prefix=f"atalp_speed_{settings.model}_"))
    rows = plan.plan_rows(cfg, work_dir)
    print(f"{len(rows)} rows, each in a fresh process; config: {json.dumps(cfg)}", flush=True)
    started = time.time()
    results = run_rows(cfg, rows, settings.row_timeout)
    summary = report.summarize(rows, results, cfg)
    record = {
        # sys.argv, not main's argv: absl has taken the flags out of that one.
        "command": shlex.join(["python", "bench/speed.py"] + sys.argv[1:]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "total_seconds": time.time() - started, "machine": report.machine_info(),
        "settings": dataclasses.asdict(settings), "config": cfg,
        "memory_method": "each row runs in a fresh subprocess; peak_rss_mb is its ru_maxrss "
                         "(includes the TensorFlow import), rss_setup_mb its VmRSS after imports, "
                         "data and model build; in the one-process epochs row, rss_growth_mb is "
                         "the VmRSS growth while a variant was built and warmed up",
        "rows": [{**row, "result": results.get(row["id"])} for row in rows],
        "summary": summary,
    }
    out.write_text(json.dumps(record, indent=2))
    shutil.rmtree(work_dir, ignore_errors=True)
    print("\n" + tables.format_tables(summary))
    print(f"\nWrote {out} ({record['total_seconds']:.0f} s)")


if __name__ == "__main__":
    common.run(main, program="bench/speed.py", quiet=False)
