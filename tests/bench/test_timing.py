"""Round-robin order and stopping rules (a fake clock; nothing is timed)."""

import pytest

from speedlib import timing


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def recorder(log, clock, name, cost):
    def fn():
        log.append(name)
        clock.now += cost
    return fn


def test_round_robin_calls_in_order_after_warmup():
    clock, log = FakeClock(), []
    fns = {"a": recorder(log, clock, "a", 1.0), "b": recorder(log, clock, "b", 3.0)}
    times = timing.round_robin(fns, timing.fixed_rounds(3), warmup=2, clock=clock)
    assert log == ["a", "b"] * 5
    assert times == {"a": [1.0] * 3, "b": [3.0] * 3}


def test_a_returned_float_is_the_call_duration():
    clock = FakeClock()

    def epoch():
        clock.now += 10.0    # set-up plus the epoch
        return 4.0           # the epoch alone, as a callback timed it

    times = timing.round_robin({"fit": epoch}, timing.fixed_rounds(2), clock=clock)
    assert times == {"fit": [4.0, 4.0]}


def test_interleaved_medians_stops_after_min_rounds_and_min_seconds():
    clock, log = FakeClock(), []
    fns = {"a": recorder(log, clock, "a", 1.0), "b": recorder(log, clock, "b", 1.0)}
    result = timing.interleaved_medians(fns, min_seconds=10.0, min_rounds=2, warmup=0,
                                        clock=clock)
    assert result["rounds"] == 5          # 2 s per round: 10 s needs 5 rounds
    assert result["a"] == result["b"] == 1.0
    log.clear()
    result = timing.interleaved_medians(fns, min_seconds=0.0, min_rounds=4, warmup=1,
                                        clock=clock)
    assert result["rounds"] == 4 and len(log) == 2 * (1 + 4)
    result = timing.interleaved_medians(fns, min_seconds=1e9, min_rounds=1, max_rounds=3,
                                        warmup=0, clock=clock)
    assert result["rounds"] == 3


def test_median_of_uneven_rounds():
    clock = FakeClock()
    costs = iter([1.0, 5.0, 2.0])

    def fn():
        clock.now += next(costs)

    result = timing.interleaved_medians({"f": fn}, min_seconds=0, min_rounds=3, warmup=0,
                                        clock=clock)
    assert result["f"] == 2.0


def test_epoch_summary_drops_warmup():
    summary = timing.epoch_summary([9.0, 2.0, 4.0, 3.0], images=300, warmup=1)
    assert summary["epoch_seconds"] == 3.0
    assert summary["images_per_second"] == pytest.approx(100.0)
    assert timing.warmup_epochs({"jit": "step"}) == 2 and timing.warmup_epochs({}) == 1


def test_paired_ratio_is_the_median_of_per_round_ratios():
    # Round ratios 2/1, 6/2, 4/4 = 2, 3, 1: median 2, whatever the raw times' spread.
    median, low, high = timing.paired_ratio([2.0, 6.0, 4.0], [1.0, 2.0, 4.0])
    assert median == 2.0
    assert 1.0 <= low <= median <= high <= 3.0


def test_paired_ratio_interval_narrows_with_steady_ratios():
    steady = timing.paired_ratio([1.1 * t for t in range(1, 30)], list(range(1, 30)))
    assert steady == pytest.approx((1.1, 1.1, 1.1))
    noisy = timing.paired_ratio([1.0, 1.3, 0.8, 1.2, 0.9, 1.1], [1.0] * 6)
    assert noisy[1] < 1.0 < noisy[2]


def test_paired_ratio_refuses_unpaired_lists():
    with pytest.raises(ValueError, match="Received: 2 and 3"):
        timing.paired_ratio([1.0, 2.0], [1.0, 2.0, 3.0])
