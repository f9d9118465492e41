"""The raw-results file of a bench script: every round's timings, the ratios computed
from them, and what ran where (command line, commit, date, machine, load, versions).

A ratio in the docs cites the file its command wrote, so it can be recomputed:

    run = record.start()                 # at the start: command, machine, load
    ...                                  # the timed rounds
    record.write(args.out, run, settings=..., rounds=..., ratios=...)
"""

import datetime
import json
import os
import shlex
import subprocess
import sys
import time

from .plan import BENCH_DIR, REPO
from .report import machine_info
from .timing import paired_ratio

RESULTS_DIR = BENCH_DIR / "results"
# Environment variables that change what a script measures.
ENVIRONMENT = ("KERAS_BACKEND", "TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS",
               "OMP_NUM_THREADS", "CUDA_VISIBLE_DEVICES")


def add_out_flag(parser, name):
    """``--out``, default ``bench/results/<name>.json``; an empty value writes nothing."""
    parser.add_argument("--out", default=str(RESULTS_DIR / f"{name}.json"),
                        help="raw results JSON (default: %(default)s); '' writes none")


def _uncommitted_changes():
    try:
        done = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain",
                               "--untracked-files=no"], capture_output=True, text=True,
                              timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    # The changed tracked files, not a flag: a script edited beside the run matters
    # less than the library it measures.
    return [line[3:] for line in done.stdout.splitlines()] if done.returncode == 0 else None


def start(argv=None):
    """What a run records before it measures: the command line that makes it
    again, the date, the machine (CPU count, commit, versions) and the load."""
    argv = list(sys.argv if argv is None else argv)
    script = os.path.relpath(os.path.abspath(argv[0]), REPO) if argv else "?"
    return {
        "command": shlex.join(["python", script] + argv[1:]),
        "environment": {k: os.environ[k] for k in ENVIRONMENT if k in os.environ},
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "uncommitted_changes": _uncommitted_changes(),
        "loadavg_start": list(os.getloadavg()),
        "started": time.time(),
    }


def paired(series, pairs):
    """Paired per-round ratios (`timing.paired_ratio`) of ``(name, baseline)`` pairs.

    Args:
        series: ``{clock: {name: [seconds per round]}}``, e.g. ``{"wall": ..., "cpu": ...}``;
            names may be strings or tuples (joined with "/" in the result).
        pairs: ``(name, baseline)`` pairs; a pair with a name not timed is skipped.

    Returns:
        A list of ``{"name", "baseline", <clock>: {"median", "low", "high",
        "per_round"}}``, the interval the 95% bootstrap interval of the median.
    """
    result = []
    for name, base in pairs:
        entry = {"name": _label(name), "baseline": _label(base)}
        for clock, times in series.items():
            if name not in times or base not in times:
                break
            median, low, high = paired_ratio(times[name], times[base])
            entry[clock] = {"median": median, "low": low, "high": high,
                            "per_round": [a / b for a, b in zip(times[name], times[base])]}
        else:
            result.append(entry)
    return result


def _label(name):
    return "/".join(name) if isinstance(name, tuple) else name


def keyed(times):
    """``{name: values}`` with tuple names joined by "/" (JSON keys are strings)."""
    return {_label(name): values for name, values in times.items()}


def format_ratio(entry, clock):
    """``"1.054 [1.023, 1.073]"`` of one clock of a `paired` entry."""
    r = entry[clock]
    return f"{r['median']:6.3f} [{r['low']:5.3f}, {r['high']:5.3f}]"


def write(out, run, **results):
    """Writes ``run`` (from `start`) plus ``results`` and the end load to ``out``
    (JSON); nothing if ``out`` is empty. Returns the path written or None."""
    if not out:
        return None
    from atalp_keras.artifacts import to_python

    record = dict(run)
    started = record.pop("started")
    record.update(loadavg_end=list(os.getloadavg()), total_seconds=time.time() - started,
                  **results)
    directory = os.path.dirname(os.path.abspath(out))
    os.makedirs(directory, exist_ok=True)
    with open(out, "w") as f:
        json.dump(to_python(record), f, indent=2)
        f.write("\n")
    print(f"Wrote {out}", flush=True)
    return out


def report_round_robin(out, run, title, series, pairs, images_per_round, settings, width=16):
    """Prints and writes (`write`) a `timing.round_robin_wall_cpu` result:
    images/s and median CPU seconds per variant, then the `paired` ratios
    of ``pairs``. Returns what `write` returns."""
    import statistics

    ratios = paired(series, pairs)
    print(f"{title}; time ratios are medians of per-round ratios [95% bootstrap interval]")
    print(f"{'variant':{width}s} {'img/s':>7s} {'cpu s':>6s}  {'time / baseline (wall)':>24s}  "
          f"{'time / baseline (cpu)':>24s}  baseline")
    for name in series["wall"]:
        print(f"{name:{width}s} {images_per_round / statistics.median(series['wall'][name]):7.0f} "
              f"{statistics.median(series['cpu'][name]):6.2f}")
    for entry in ratios:
        print(f"{entry['name']:{width}s} {'':7s} {'':6s}  {format_ratio(entry, 'wall'):>24s}  "
              f"{format_ratio(entry, 'cpu'):>24s}  {entry['baseline']}")
    return write(out, run, settings=settings, images_per_round=images_per_round,
                 images_per_second={name: images_per_round / statistics.median(t)
                                    for name, t in series["wall"].items()},
                 rounds={"wall_seconds": series["wall"], "cpu_seconds": series["cpu"]},
                 ratios=ratios)
