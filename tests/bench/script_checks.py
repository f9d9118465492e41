"""Running a bench script in this process and checking the JSON it writes;
shared by tests/bench/test_scripts.py and tests/jax_backend/test_bench_jax.py
(backend-neutral: no TensorFlow)."""

import importlib.util
import json

import pytest

from speedlib import record


def script(name):
    spec = importlib.util.spec_from_file_location(name, str(record.BENCH_DIR / f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(name, tmp_path, *args):
    """Runs ``bench/<name>.py`` in this process; returns its JSON."""
    out = tmp_path / f"{name}.json"
    script(name).main(list(args) + ["--out", str(out)])
    data = json.loads(out.read_text())
    command = " ".join([f"python bench/{name}.py"] + list(args) + ["--out", str(out)])
    assert data["command"] == command
    assert len(data["machine"]["git_commit"]) == 40 and len(data["loadavg_end"]) == 3
    return data


def assert_ratios_recompute(data, clock_key, clock):
    """Each ratio's per-round values are the rounds' quotients."""
    times = data["rounds"][clock_key]
    assert data["ratios"]
    for entry in data["ratios"]:
        expected = [a / b for a, b in zip(times[entry["name"]], times[entry["baseline"]])]
        assert entry[clock]["per_round"] == pytest.approx(expected)


def assert_one_round_pair(data, name, baseline):
    """A one-round run of the variants ``baseline`` and ``name``: one round
    per clock each, their one ratio, recomputable from the rounds."""
    assert data["settings"]["variants"] == [baseline, name]
    for clock in ("wall_seconds", "cpu_seconds"):
        assert {k: len(v) for k, v in data["rounds"][clock].items()} == {baseline: 1, name: 1}
    (ratio,) = data["ratios"]
    assert (ratio["name"], ratio["baseline"]) == (name, baseline)
    assert_ratios_recompute(data, "wall_seconds", "wall")
    assert_ratios_recompute(data, "cpu_seconds", "cpu")
