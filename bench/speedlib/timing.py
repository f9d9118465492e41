"""Timing on a shared machine: round-robin calls, epoch timers, memory readings.

Round-robin (each round calls every function once, always in the same order)
means load from other processes hits every variant alike, so ratios measured
in one process stay steady while absolute times move with the load.
"""

import resource
import statistics
import time


def rss_mb():
    """Current resident set size of this process (VmRSS), in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def peak_rss_mb():
    """Peak resident set size of this process so far (Linux: ru_maxrss in KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def round_robin(fns, keep_going, warmup=0, clock=time.perf_counter):
    """Calls every ``fns[name]()`` once per round until ``keep_going(rounds, elapsed)``
    is false; returns ``{name: [seconds per call]}``.

    A function may return its own duration (a float: e.g. an epoch timed by a
    callback, leaving set-up out); otherwise the wall time of the call counts.
    Each function is first called ``warmup`` times (tracing, XLA compilation),
    untimed.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {name: [] for name in fns}
    start, rounds = clock(), 0
    while keep_going(rounds, clock() - start):
        for name, fn in fns.items():
            t0 = clock()
            value = fn()
            own = value if isinstance(value, float) else None
            times[name].append(own if own is not None else clock() - t0)
        rounds += 1
    return times


def round_robin_wall_cpu(fns, rounds, warmup=1):
    """`round_robin` over ``rounds`` rounds timing each call twice: wall seconds
    and this process's CPU seconds (steadier when other processes share the cores).

    Returns ``{"wall": {name: [seconds per round]}, "cpu": {name: [...]}}``.
    """
    cpu = {name: [] for name in fns}

    def with_cpu(name, fn):
        def run():
            start = time.process_time()
            fn()
            cpu[name].append(time.process_time() - start)
        return run

    wall = round_robin({name: with_cpu(name, fn) for name, fn in fns.items()},
                       fixed_rounds(rounds), warmup=warmup)
    return {"wall": wall, "cpu": {name: values[warmup:] for name, values in cpu.items()}}


def interleaved_medians(fns, min_seconds=1.0, min_rounds=7, max_rounds=500, warmup=2,
                        clock=time.perf_counter):
    """Median time of each function over round-robin rounds: at least
    ``min_rounds`` rounds and ``min_seconds`` in all, at most ``max_rounds``.

    Returns ``{name: median seconds, ..., "rounds": n}``.
    """
    def keep_going(rounds, elapsed):
        return rounds < max_rounds and (rounds < min_rounds or elapsed < min_seconds)

    times = round_robin(fns, keep_going, warmup=warmup, clock=clock)
    result = {name: statistics.median(values) for name, values in times.items()}
    result["rounds"] = len(next(iter(times.values()))) if times else 0
    return result


def fixed_rounds(rounds):
    """A ``keep_going`` for `round_robin`: exactly ``rounds`` rounds."""
    return lambda done, elapsed: done < rounds


def sync(value):
    """Blocks until a (possibly nested) TensorFlow result is computed."""
    import tensorflow as tf

    flat = tf.nest.flatten(value)
    if flat:
        flat[0].numpy()
    return value


def epoch_timer():
    """A Keras callback whose ``times`` lists the wall time of every epoch of ``fit``."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times = []

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.perf_counter() - self._start)

    return EpochTimer()


def epoch_summary(times, images, warmup=1):
    """Warm-up epochs dropped; median of the timed epochs."""
    timed = times[warmup:] if len(times) > warmup else times
    median = statistics.median(timed)
    return {"epoch_seconds": median, "images_per_second": images / median,
            "epoch_times": times, "warmup_epochs": warmup, "images_per_epoch": images}


def warmup_epochs(row):
    """Two warm-up epochs under XLA: with a smaller last batch, epoch 1 compiles
    the full batch, then the smaller one under a relaxed (None-batch) trace,
    and epoch 2 compiles the full batch again under that relaxed trace."""
    return 2 if row.get("jit") in ("step", "attack") else 1


def paired_ratio(times, base_times, confidence=0.95, resamples=2000, seed=0):
    """Median over rounds of ``times[i] / base_times[i]`` with a bootstrap interval.

    Both lists come from the same round-robin rounds, so each ratio compares two
    variants under the same load; the spread of these ratios, not of the raw
    times, says how well the comparison is resolved.

    Returns:
        ``(median, low, high)``: the median ratio and the percentile bootstrap
        interval of that median at ``confidence``.
    """
    import numpy as np

    if len(times) != len(base_times) or not times:
        raise ValueError("paired_ratio needs two equally long, non-empty lists of times "
                         f"from the same rounds. Received: {len(times)} and {len(base_times)}")
    ratios = np.asarray(times, float) / np.asarray(base_times, float)
    rng = np.random.default_rng(seed)
    medians = np.median(rng.choice(ratios, size=(resamples, ratios.size)), axis=1)
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(medians, [tail, 100.0 - tail])
    return float(np.median(ratios)), float(low), float(high)
