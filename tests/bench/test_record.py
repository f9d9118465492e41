"""The bench scripts' raw-results JSON: what a run records and the ratios in it."""

import json
import os

from speedlib import record, timing


def test_paired_ratios_keep_every_round_and_skip_untimed_pairs():
    series = {"wall": {"a": [2.0, 6.0, 4.0], "b": [1.0, 2.0, 4.0]},
              "cpu": {"a": [1.0, 1.0, 1.0], "b": [2.0, 2.0, 2.0]}}
    (entry,) = record.paired(series, [("a", "b"), ("a", "missing")])
    assert entry["name"] == "a" and entry["baseline"] == "b"
    assert entry["wall"]["per_round"] == [2.0, 3.0, 1.0]
    assert entry["wall"]["median"] == 2.0
    assert entry["cpu"]["median"] == entry["cpu"]["low"] == entry["cpu"]["high"] == 0.5
    assert record.format_ratio(entry, "cpu") == " 0.500 [0.500, 0.500]"


def test_tuple_names_become_slash_labels():
    series = {"cpu": {("fused", "fwd"): [1.0], ("keras", "fwd"): [2.0]}}
    (entry,) = record.paired(series, [(("fused", "fwd"), ("keras", "fwd"))])
    assert (entry["name"], entry["baseline"]) == ("fused/fwd", "keras/fwd")
    assert record.keyed(series["cpu"]) == {"fused/fwd": [1.0], "keras/fwd": [2.0]}


def test_write_records_command_machine_load_and_results(tmp_path):
    run = record.start(["bench/some_script.py", "--rounds", "2", "--note", "a b"])
    out = tmp_path / "sub" / "r.json"
    assert record.write(str(out), run, rounds={"cpu_seconds": {"a": [0.5, 0.25]}}) == str(out)
    data = json.loads(out.read_text())
    assert data["command"] == "python bench/some_script.py --rounds 2 --note 'a b'"
    assert len(data["machine"]["git_commit"]) == 40
    assert data["machine"]["nproc"] == os.cpu_count()
    assert "keras" in data["machine"]["versions"]
    assert len(data["loadavg_start"]) == len(data["loadavg_end"]) == 3
    assert data["date"].endswith("+00:00") and data["total_seconds"] >= 0
    assert data["rounds"] == {"cpu_seconds": {"a": [0.5, 0.25]}}
    assert "started" not in data
    assert record.write("", run) is None


def test_round_robin_wall_cpu_drops_warmup_from_both_clocks():
    calls = []
    series = timing.round_robin_wall_cpu({"a": lambda: calls.append("a"),
                                          "b": lambda: calls.append("b")}, rounds=2, warmup=1)
    assert calls == ["a", "b"] * 3
    assert {k: len(v) for k, v in series["wall"].items()} == {"a": 2, "b": 2}
    assert {k: len(v) for k, v in series["cpu"].items()} == {"a": 2, "b": 2}


def test_default_out_is_under_bench_results():
    import argparse

    parser = argparse.ArgumentParser()
    record.add_out_flag(parser, "x_28x28")
    default = parser.parse_args([]).out
    assert default.endswith(os.path.join("bench", "results", "x_28x28.json"))
    assert parser.parse_args(["--out", ""]).out == ""
