"""Speed benchmark of atalp-keras against a hand-written loop and IBM ART (issue 6).

One command prints a table and writes JSON. Every row runs in a fresh Python
subprocess, one after the other, so that (a) its peak memory is its own
(``ru_maxrss`` of that process; the TensorFlow import alone is part of it, so
the RSS after setup is reported too) and (b) no row inherits another's traced
functions, XLA caches or allocator state.

Sections:
  units     unit costs on one batch: forward, forward + input gradient (one
            attack step), training step at B and 2B; the cost model's inputs.
  steps     ms per compiled train_step of every variant, all in one process,
            timed in round-robin on the same batches: steadier ratios on a
            shared machine than whole epochs in separate processes.
  train     images/s of one training epoch (median over timed epochs after a
            warm-up epoch) for every preset, the hand-written reference loop,
            the levers (XLA on the step / on the attack only,
            steps_per_execution, two passes instead of one concatenated pass,
            input validation off, mixed precision) and ART's AdversarialTrainerMadryPGD (a
            bounded number of batches, median per batch after a warm-up batch).
  attacks   images/s and robust accuracy of FGSM, PGD-20, APGD-CE and
            AutoAttack (ours) and of ART's counterparts, on the same test
            points of a model PGD-trained by this run.

Cost model: a PGD-K epoch costs K forward+input-gradient passes plus one
training pass per batch (the paired presets train on 2B images at once):
    predicted = K * t_grad(B) + t_train(B or 2B)

Usage (from the repository root):
    KERAS_BACKEND=tensorflow TF_CPP_MIN_LOG_LEVEL=2 python bench/speed.py --repeats 3
    python bench/speed.py --quick                      # about 3 minutes
    python bench/speed.py --model resnet18 --sections units,steps,train \\
        --presets standard,pat,at_alp --steps_per_epoch 2 --timed_epochs 1 --no_levers --no_art

Mixed precision (``mixed_float16`` with loss scaling, ``mixed_bfloat16``) is a
GPU lever; the lever rows time it on this CPU only to record that it does not
help here (see docs/benchmarks.md).
"""

import argparse
import datetime
import itertools
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

PRESETS = ("standard", "pat", "alp", "at", "at_alp", "trades", "fast")
PAIRED = ("alp", "at", "at_alp", "trades")
RESULT_TAG = "@@RESULT@@"


# ============================================================================ models and data
def small_cnn(input_shape=(8, 8, 1), num_classes=10):
    """The digits CNN of tests/conftest.py (3.4k weights), with named conv layers
    so the attention term has two stages to pair."""
    import keras

    inputs = keras.Input(input_shape, name="images")
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dense(32, activation="relu", name="dense")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="small_cnn")


def build_classifier(cfg):
    """Returns ``(classifier, stage_layers)`` for ``cfg["model"]``."""
    import keras

    import atalp_keras as ak

    keras.utils.set_random_seed(cfg["seed"])
    shape = tuple(cfg["input_shape"])
    if cfg["model"] == "small_cnn":
        return small_cnn(shape, 10), ["conv1", "conv2"]
    if cfg["model"] == "tiny_resnet":
        return ak.tiny_resnet(shape, 10), None
    if cfg["model"] == "resnet18":
        return ak.cifar_resnet(18, shape, 10), None
    raise ValueError(f"Unknown model {cfg['model']!r}")


def load_data(cfg):
    """``(train_ds, x_train, y_train, x_test, y_test, images_per_epoch)``.

    Digits for the digits models; uniform random 32x32x3 images with random
    labels for resnet18 (speed only: there is no CIFAR-10 offline).
    """
    import numpy as np
    import tensorflow as tf

    from atalp_keras.data import load_dataset, make_pipeline, to_numpy

    batch, steps = cfg["batch_size"], cfg["steps_per_epoch"]
    if cfg["data"] == "digits":
        info = load_dataset("digits", seed=cfg["seed"])
        train, test = info.train, info.test
        x_train, y_train = to_numpy(train)
        x_test, y_test = to_numpy(test)
    else:
        rng = np.random.default_rng(cfg["seed"])
        n = 4 * batch
        x_train = rng.random((n,) + tuple(cfg["input_shape"]), dtype=np.float32)
        y_train = rng.integers(0, 10, n).astype("int32")
        x_test, y_test = x_train[:batch], y_train[:batch]
        train = tf.data.Dataset.from_tensor_slices((x_train, y_train))
    repeat = steps is not None
    train_ds = make_pipeline(train, batch, shuffle=True, seed=cfg["seed"], repeat=repeat)
    images = steps * batch if repeat else len(x_train)
    return train_ds, x_train, y_train, x_test, y_test, images


# ============================================================================ measuring
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


def interleaved_medians(fns, min_seconds=1.0, min_rounds=7, max_rounds=500, warmup=2):
    """Median wall time of each ``fns[name]()``, timed in round-robin.

    Every function is called ``warmup`` times first (tracing, XLA compilation),
    then once per round, in the same order, until each has had at least
    ``min_rounds`` calls and the functions together ran ``min_seconds``.
    Round-robin spreads the load of other processes evenly over the functions.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    start = time.perf_counter()
    rounds = 0
    while rounds < max_rounds and (rounds < min_rounds
                                   or time.perf_counter() - start < min_seconds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
        rounds += 1
    result = {name: statistics.median(values) for name, values in times.items()}
    result["rounds"] = rounds
    return result


def _sync(value):
    """Blocks until a (possibly nested) result is computed."""
    import tensorflow as tf

    flat = tf.nest.flatten(value)
    if flat:
        flat[0].numpy()
    return value


class EpochTimer:
    """Keras callback recording the wall time of every epoch of ``fit``."""

    def __new__(cls):
        import keras

        class _Timer(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.times = []

            def on_epoch_begin(self, epoch, logs=None):
                self._start = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                self.times.append(time.perf_counter() - self._start)

        return _Timer()


def epoch_summary(times, images, warmup=1):
    """Warm-up epochs dropped; median of the timed epochs."""
    timed = times[warmup:] if len(times) > warmup else times
    median = statistics.median(timed)
    return {
        "epoch_seconds": median,
        "images_per_second": images / median,
        "epoch_times": times,
        "warmup_epochs": warmup,
        "images_per_epoch": images,
    }


def warmup_epochs(row):
    """Two warm-up epochs under XLA: with a smaller last batch, epoch 1 compiles
    the full batch, then the smaller one under a relaxed (None-batch) trace,
    and epoch 2 compiles the full batch again under that relaxed trace."""
    return 2 if row.get("jit") in ("step", "attack") else 1


# ============================================================================ bench-only variants
def make_xla_attack(inner):
    """Wraps an attack so that only the attack loop is XLA-compiled inside an
    otherwise non-XLA ``train_step`` (a nested ``jit_compile`` tf.function)."""
    import tensorflow as tf

    from atalp_keras.attacks.base import Attack

    class XLAAttack(Attack):
        def __init__(self):
            super().__init__(inner.eps, seed=inner.seed)
            self.inner = inner
            self.name = inner.name
            self.step_size = getattr(inner, "step_size", None)
            self._fn = {}

        def __call__(self, model, x, y):
            if id(model) not in self._fn:
                self._fn[id(model)] = tf.function(
                    lambda xb, yb: inner(model, xb, yb), jit_compile=True, reduce_retracing=True)
            return self._fn[id(model)](x, y)

        def get_config(self):
            return inner.get_config()

    return XLAAttack()


def paired_variant_class(mode):
    """ATALPModel whose paired presets (alp, at, at_alp, trades) get their clean
    and adversarial halves differently, to measure the library's choice:

    ``"two_pass"``: two forward passes (clean, then adversarial) instead of one
    concatenated pass. ``"split"``: one concatenated pass, halves taken with
    ``ops.split`` instead of the library's slices ``[:B]``/``[B:]`` (the
    gradient of a slice is a zero-padded full-size tensor per slice; that of a
    split is one concatenation).
    """
    from keras import ops

    from atalp_keras.model import ATALPModel

    class PairedVariantModel(ATALPModel):
        def compute_terms(self, x, y, x_adv, training=True):
            if x_adv is None or not self._paired:
                return super().compute_terms(x, y, x_adv, training=training)
            if mode == "two_pass":
                out_nat = self.feature_model(x, training=training)
                out_adv = self.feature_model(x_adv, training=training)
                logits_nat, logits_adv = out_nat["logits"], out_adv["logits"]
                stages_nat, stages_adv = out_nat["stages"], out_adv["stages"]
            else:
                out = self.feature_model(ops.concatenate([x, x_adv], axis=0), training=training)
                logits_nat, logits_adv = ops.split(out["logits"], 2, axis=0)
                halves = [ops.split(s, 2, axis=0) for s in out["stages"]]
                stages_nat, stages_adv = [h[0] for h in halves], [h[1] for h in halves]
            return self.paired_terms(y, logits_nat, logits_adv, stages_nat, stages_adv)

    return PairedVariantModel


def model_class_for(option):
    """The model class of a variant option (``two_pass``, ``split`` or other)."""
    from atalp_keras.model import ATALPModel

    return paired_variant_class(option) if option in ("two_pass", "split") else ATALPModel


# ============================================================================ the reference loop
def reference_pgd_step(model, optimizer, eps, step_size, num_steps, jit_compile=False, seed=0):
    """Minimal Madry PGD-K adversarial training step, written by hand.

    Random start, K signed-gradient steps in inference mode with projection,
    then one training step on the adversarial batch. No metrics, no checks:
    the practical limit for the package's ``pat`` train_step.
    """
    import keras
    import tensorflow as tf

    seed_generator = keras.random.SeedGenerator(seed)
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    variables = model.trainable_variables

    @tf.function(jit_compile=jit_compile, reduce_retracing=True)
    def step(x, y):
        noise = keras.random.uniform(tf.shape(x), -eps, eps, seed=seed_generator)
        x_adv = tf.clip_by_value(x + noise, 0.0, 1.0)
        for _ in tf.range(num_steps):
            with tf.GradientTape() as tape:
                tape.watch(x_adv)
                loss = ce(y, model(x_adv, training=False))
            x_adv = x_adv + step_size * tf.sign(tape.gradient(loss, x_adv))
            x_adv = tf.clip_by_value(tf.clip_by_value(x_adv, x - eps, x + eps), 0.0, 1.0)
        with tf.GradientTape() as tape:
            loss = ce(y, model(x_adv, training=True))
        optimizer.apply(tape.gradient(loss, variables), variables)
        return loss

    return step


# ============================================================================ rows (child side)
def row_units(cfg, row):
    """Unit costs on one batch of B images (and 2B for the paired training pass).

    The eight functions (four passes, without and with XLA) are timed in
    round-robin, so load from other processes hits them alike.
    """
    import keras
    import tensorflow as tf

    classifier, _ = build_classifier(cfg)
    train_ds, *_, images = load_data(cfg)
    x, y = next(iter(train_ds))
    x2, y2 = tf.concat([x, x], 0), tf.concat([y, y], 0)
    # The input pipeline alone (shuffle, batch, prefetch; cached after the
    # first pass), iterated from Python, which is slower than fit's in-graph
    # iterator: a lower bound on what it can feed.
    epoch_ds = train_ds.take(cfg["steps_per_epoch"]) if cfg["steps_per_epoch"] else train_ds
    data_times = []
    for _ in range(4):
        start = time.perf_counter()
        for _batch in epoch_ds:
            pass
        data_times.append(time.perf_counter() - start)
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    optimizer = keras.optimizers.Adam(1e-3)
    variables = classifier.trainable_variables
    setup = rss_mb()
    fns = {}
    for jit in (False, True):
        @tf.function(jit_compile=jit)
        def forward(xb):
            return classifier(xb, training=False)

        @tf.function(jit_compile=jit)
        def grad_pass(xb, yb):
            with tf.GradientTape() as tape:
                tape.watch(xb)
                loss = ce(yb, classifier(xb, training=False))
            return tape.gradient(loss, xb)

        @tf.function(jit_compile=jit)
        def train_pass(xb, yb):
            with tf.GradientTape() as tape:
                loss = ce(yb, classifier(xb, training=True))
            optimizer.apply(tape.gradient(loss, variables), variables)
            return loss

        suffix = "_xla" if jit else ""
        fns["t_forward" + suffix] = lambda f=forward: _sync(f(x))
        fns["t_grad" + suffix] = lambda f=grad_pass: _sync(f(x, y))
        fns["t_train" + suffix] = lambda f=train_pass: _sync(f(x, y))
        fns["t_train2" + suffix] = lambda f=train_pass: _sync(f(x2, y2))
    result = interleaved_medians(fns, min_seconds=cfg["unit_seconds"],
                                 min_rounds=cfg["min_rounds"], warmup=cfg["warmup_calls"])
    result["batch_size"] = int(x.shape[0])
    result["input_pipeline_images_per_second"] = images / statistics.median(data_times[1:])
    result["params"] = int(classifier.count_params())
    result["rss_setup_mb"] = setup
    return result


def _attack_for(cfg, method):
    from atalp_keras import methods

    return methods.default_attack(method, eps=cfg["eps"], step_size=cfg["step_size"],
                                  num_steps=cfg["pgd_steps"], seed=cfg["seed"])


def row_preset(cfg, row):
    """One ``ATALPModel.fit`` run: a warm-up epoch plus the timed epochs."""
    import keras

    if row.get("policy"):
        # Before any layer is built; compile() then wraps the optimizer in a
        # LossScaleOptimizer for mixed_float16.
        keras.mixed_precision.set_global_policy(row["policy"])
    classifier, stages = build_classifier(cfg)
    train_ds, *_, images = load_data(cfg)
    model_class = model_class_for(row.get("paired", ""))
    model = model_class(classifier, stage_layers=stages,
                        validate_inputs=row.get("validate_inputs", True))
    attack = _attack_for(cfg, row["method"])
    if attack is not None and row.get("jit") == "attack":
        attack = make_xla_attack(attack)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), method=row["method"], attack=attack,
                  eval_attack=None, jit_compile=row.get("jit") == "step",
                  steps_per_execution=row.get("steps_per_execution", 1))
    setup = rss_mb()
    timer = EpochTimer()
    warmup = warmup_epochs(row)
    history = model.fit(train_ds, epochs=warmup + cfg["timed_epochs"],
                        steps_per_epoch=cfg["steps_per_epoch"], verbose=0, callbacks=[timer])
    result = epoch_summary(timer.times, images, warmup)
    result["final_logs"] = {k: float(v[-1]) for k, v in history.history.items()}
    result["rss_setup_mb"] = setup
    return result


def row_reference(cfg, row):
    """The hand-written step in a Python loop over the same tf.data pipeline
    (how the keras-io custom training loop guide writes it), epoch by epoch."""
    import keras

    classifier, _ = build_classifier(cfg)
    train_ds, *_, images = load_data(cfg)
    if cfg["steps_per_epoch"]:
        train_ds = train_ds.take(cfg["steps_per_epoch"])
    step = reference_pgd_step(classifier, keras.optimizers.Adam(1e-3), cfg["eps"],
                              cfg["step_size"], cfg["pgd_steps"],
                              jit_compile=row.get("jit") == "step",
                              seed=cfg["seed"])
    setup = rss_mb()
    times = []
    warmup = warmup_epochs(row)
    for _ in range(warmup + cfg["timed_epochs"]):
        start = time.perf_counter()
        for x, y in train_ds:
            loss = step(x, y)
        loss.numpy()
        times.append(time.perf_counter() - start)
    result = epoch_summary(times, images, warmup)
    result["rss_setup_mb"] = setup
    return result


def row_steps(cfg, row):
    """Milliseconds per training step of every variant, all in this one process
    and timed in round-robin on the same full batches: the load of other
    processes hits every variant alike, so the ratios are steadier than those
    of the epoch rows. Each variant is its own compiled ``train_step`` (no
    ``fit`` loop around it)."""
    import keras
    import tensorflow as tf

    train_ds, *_ = load_data(cfg)
    batches = [b for b in train_ds.take(8) if int(b[0].shape[0]) == cfg["batch_size"]]
    fns = {}
    for variant in row["variants"]:
        method, _, option = variant.partition("+")
        xla = option == "xla"
        classifier, stages = build_classifier(cfg)
        if method == "reference":
            fn = reference_pgd_step(classifier, keras.optimizers.Adam(1e-3), cfg["eps"],
                                    cfg["step_size"], cfg["pgd_steps"], jit_compile=xla,
                                    seed=cfg["seed"])
        else:
            model_class = model_class_for(option)
            model = model_class(classifier, stage_layers=stages,
                                validate_inputs=option != "no_validate")
            # jit_compile in compile() also drops the input checks (no XLA kernel
            # for Assert), as it does in fit.
            model.compile(optimizer=keras.optimizers.Adam(1e-3), method=method,
                          attack=_attack_for(cfg, method), eval_attack=None, jit_compile=xla)
            step = tf.function(model.train_step, jit_compile=xla, reduce_retracing=True)
            fn = (lambda st: lambda x, y: st((x, y))["loss"])(step)
        fns[variant] = (lambda f, it: lambda: _sync(f(*next(it))))(fn, itertools.cycle(batches))
    result = interleaved_medians(fns, min_seconds=cfg["step_seconds"],
                                 min_rounds=cfg["min_rounds"], warmup=cfg["warmup_calls"])
    result["batches"] = len(batches)
    return {"ms_per_step": {k: 1e3 * v for k, v in result.items() if k in fns},
            "rounds": result["rounds"]}


def row_epochs(cfg, row):
    """Images/s of whole training epochs of every variant, all in this one
    process, one epoch of each variant per round (round-robin), median over
    the rounds after two warm-up rounds. Presets run ``fit(epochs=1)`` (the
    epoch is timed by a callback, so fit's set-up is excluded); the reference
    is its Python loop; ``art`` is one ART trainer batch per round."""
    import keras
    from art.defences.trainer import AdversarialTrainerMadryPGD

    train_ds, x_train, y_train, *_, images = load_data(cfg)
    if cfg["steps_per_epoch"]:
        epoch_ds = train_ds.take(cfg["steps_per_epoch"])
    batch = cfg["batch_size"]
    runners, counts = {}, {}
    for variant in row["variants"]:
        method, _, option = variant.partition("+")
        classifier, stages = build_classifier(cfg)
        counts[variant] = images
        if method == "reference":
            step = reference_pgd_step(classifier, keras.optimizers.Adam(1e-3), cfg["eps"],
                                      cfg["step_size"], cfg["pgd_steps"],
                                      jit_compile=option == "xla", seed=cfg["seed"])
            data = epoch_ds if cfg["steps_per_epoch"] else train_ds

            def run(step=step, data=data):
                start = time.perf_counter()
                for x, y in data:
                    loss = step(x, y)
                loss.numpy()
                return time.perf_counter() - start
        elif method == "art":
            art = _art_classifier(classifier, cfg, optimizer=keras.optimizers.Adam(1e-3))
            trainer = AdversarialTrainerMadryPGD(
                art, nb_epochs=1, batch_size=batch, eps=cfg["eps"], eps_step=cfg["step_size"],
                max_iter=cfg["pgd_steps"], num_random_init=1)
            offsets = itertools.cycle(range(0, len(x_train) - batch + 1, batch))
            counts[variant] = batch

            def run(trainer=trainer, offsets=offsets):
                lo = next(offsets)
                start = time.perf_counter()
                trainer.fit(x_train[lo:lo + batch], y_train[lo:lo + batch], nb_epochs=1,
                            batch_size=batch)
                return time.perf_counter() - start
        else:
            model_class = model_class_for(option)
            model = model_class(classifier, stage_layers=stages,
                                validate_inputs=option != "no_validate")
            spe = int(option[3:]) if option.startswith("spe") else 1
            model.compile(optimizer=keras.optimizers.Adam(1e-3), method=method,
                          attack=_attack_for(cfg, method), eval_attack=None,
                          jit_compile=option == "xla", steps_per_execution=spe)
            timer = EpochTimer()

            def run(model=model, timer=timer):
                model.fit(train_ds, epochs=1, steps_per_epoch=cfg["steps_per_epoch"], verbose=0,
                          callbacks=[timer])
                return timer.times[-1]
        runners[variant] = run
    for _ in range(2):  # warm-up: tracing, and XLA's recompilation in epoch 2
        for run in runners.values():
            run()
    times = {variant: [] for variant in runners}
    for _ in range(cfg["epoch_rounds"]):
        for variant, run in runners.items():
            times[variant].append(run())
    per_variant = {}
    for variant, values in times.items():
        median = statistics.median(values)
        per_variant[variant] = {"seconds": median, "images_per_second": counts[variant] / median,
                                "times": values}
    return {"images_per_second": {v: r["images_per_second"] for v, r in per_variant.items()},
            "variants": per_variant, "rounds": cfg["epoch_rounds"]}


def _art_classifier(model, cfg, optimizer=None):
    import keras
    from art.estimators.classification import TensorFlowV2Classifier

    return TensorFlowV2Classifier(
        model, nb_classes=10, input_shape=tuple(cfg["input_shape"]),
        loss_object=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        optimizer=optimizer, clip_values=(0.0, 1.0))


def row_art_trainer(cfg, row):
    """ART's AdversarialTrainerMadryPGD, one batch per ``fit`` call (the work of
    one iteration of its epoch loop); median over ``art_batches`` batches."""
    import keras
    from art.defences.trainer import AdversarialTrainerMadryPGD

    classifier, _ = build_classifier(cfg)
    _, x_train, y_train, *_ = load_data(cfg)
    batch = cfg["batch_size"]
    art = _art_classifier(classifier, cfg, optimizer=keras.optimizers.Adam(1e-3))
    trainer = AdversarialTrainerMadryPGD(art, nb_epochs=1, batch_size=batch, eps=cfg["eps"],
                                         eps_step=cfg["step_size"], max_iter=cfg["pgd_steps"],
                                         num_random_init=1)
    setup = rss_mb()
    times = []
    for i in range(1 + cfg["art_batches"]):
        lo = (i * batch) % max(1, len(x_train) - batch)
        start = time.perf_counter()
        trainer.fit(x_train[lo:lo + batch], y_train[lo:lo + batch], nb_epochs=1, batch_size=batch)
        times.append(time.perf_counter() - start)
    median = statistics.median(times[1:])
    return {"batch_seconds": median, "images_per_second": batch / median,
            "batch_times": times, "batches_timed": cfg["art_batches"], "rss_setup_mb": setup}


def row_prepare(cfg, row):
    """PGD-trains the model the attack rows attack (package ``pat``) and saves it."""
    import keras

    from atalp_keras.model import ATALPModel

    classifier, stages = build_classifier(cfg)
    train_ds, *_ = load_data(cfg)
    model = ATALPModel(classifier, stage_layers=stages)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), method="pat",
                  attack=_attack_for(cfg, "pat"), eval_attack=None)
    if cfg["prepare_epochs"]:
        model.fit(train_ds, epochs=cfg["prepare_epochs"], steps_per_epoch=cfg["steps_per_epoch"],
                  verbose=0)
    classifier.save_weights(row["path"])
    return {"path": row["path"], "epochs": cfg["prepare_epochs"]}


def _our_attack(cfg, name):
    """Our attack for a row name, or None when the registry lacks it."""
    from atalp_keras import attacks

    eps = cfg["eps"]
    if name == "fgsm":
        return attacks.FGSMAttack(eps)
    if name in ("pgd20", "pgd20-nors"):
        return attacks.PGDAttack(eps, step_size=2.5 * eps / 20, num_steps=20,
                                 random_start=name == "pgd20", seed=cfg["seed"])
    registry = getattr(attacks, "ATTACKS", {})
    if name == "apgd-ce":
        if "apgd-ce" not in registry:
            return None
        return attacks.get_attack("apgd-ce", eps=eps, num_steps=100, restarts=1, seed=cfg["seed"])
    if name.startswith("autoattack"):
        version = name.split("-", 1)[1]
        if "autoattack" in registry:
            return attacks.get_attack("autoattack", eps=eps, version=version, seed=cfg["seed"])
        key = f"autoattack-{version}"
        if key in registry:
            return attacks.get_attack(key, eps=eps, seed=cfg["seed"])
        return None
    raise ValueError(f"Unknown attack row {name!r}")


def _art_attack(art, cfg, name):
    import numpy as np
    from art.attacks.evasion import (AutoAttack, AutoProjectedGradientDescent,
                                     FastGradientMethod, ProjectedGradientDescent)

    eps, batch = cfg["eps"], cfg["attack_batch"]
    if name == "fgsm":
        return FastGradientMethod(art, norm=np.inf, eps=eps, eps_step=eps, batch_size=batch)
    if name in ("pgd20", "pgd20-nors"):
        return ProjectedGradientDescent(art, norm=np.inf, eps=eps, eps_step=2.5 * eps / 20,
                                        max_iter=20, num_random_init=int(name == "pgd20"),
                                        batch_size=batch, verbose=False)
    if name == "apgd-ce":
        return AutoProjectedGradientDescent(art, norm=np.inf, eps=eps, eps_step=2 * eps,
                                            max_iter=100, nb_random_init=1, batch_size=batch,
                                            loss_type="cross_entropy", verbose=False)
    if name == "autoattack-standard":
        # ART's default list: APGD-CE and APGD-DLR (100 steps, 5 restarts each),
        # DeepFool, Square (5000 queries, 5 restarts).
        return AutoAttack(art, norm=np.inf, eps=eps, eps_step=2 * eps, batch_size=batch)
    if name == "autoattack-fast":
        # The nearest ART ensemble to ours (APGD-CE + APGD-T): APGD-CE then
        # APGD-DLR, 100 steps and one start each (ART has no APGD-T in AutoAttack
        # short of its targeted mode, which runs every target class).
        components = [AutoProjectedGradientDescent(
            art, norm=np.inf, eps=eps, eps_step=2 * eps, max_iter=100, nb_random_init=1,
            batch_size=batch, loss_type=loss, verbose=False)
            for loss in ("cross_entropy", "difference_logits_ratio")]
        return AutoAttack(art, norm=np.inf, eps=eps, eps_step=2 * eps, attacks=components,
                          batch_size=batch)
    raise ValueError(f"No ART counterpart for {name!r}")


def row_attack(cfg, row):
    """Throughput and robust accuracy of one attack on the first N test points."""
    import numpy as np

    classifier, _ = build_classifier(cfg)
    classifier.load_weights(row["weights"])
    *_, x_test, y_test, _ = load_data(cfg)
    n = row.get("points", cfg["attack_points"])
    x, y = x_test[:n], y_test[:n]
    batch = cfg["attack_batch"]
    if row["library"] == "ours":
        attack = _our_attack(cfg, row["attack"])
        if attack is None:
            return {"not_available": True}
        jit = bool(row.get("jit"))

        def run():
            return attack.perturb(classifier, x, y, batch_size=batch, jit_compile=jit)

        attack.perturb(classifier, x[:8], y[:8], batch_size=batch, jit_compile=jit)  # traces
    else:
        art = _art_classifier(classifier, cfg)
        attack = _art_attack(art, cfg, row["attack"])

        def run():
            return attack.generate(x, y=y)

        attack.generate(x[:8], y=y[:8])   # warm-up: traces ART's forward function
    setup = rss_mb()
    times = []
    while True:
        start = time.perf_counter()
        x_adv = np.asarray(run(), dtype=np.float32)
        times.append(time.perf_counter() - start)
        if len(times) >= 3 or sum(times) > cfg["attack_seconds"]:
            break
    logits = classifier.predict(x_adv, batch_size=256, verbose=0)
    clean = classifier.predict(x, batch_size=256, verbose=0)
    median = statistics.median(times)
    return {
        "points": n,
        "seconds": median,
        "runs": len(times),
        "images_per_second": n / median,
        "robust_accuracy": float(np.mean(np.argmax(logits, -1) == y)),
        "clean_accuracy": float(np.mean(np.argmax(clean, -1) == y)),
        "max_linf": float(np.max(np.abs(x_adv - x))),
        "rss_setup_mb": setup,
    }


ROW_FUNCTIONS = {
    "units": row_units,
    "steps": row_steps,
    "epochs": row_epochs,
    "preset": row_preset,
    "reference": row_reference,
    "art_trainer": row_art_trainer,
    "prepare": row_prepare,
    "attack": row_attack,
}


def child_main(payload):
    spec = json.loads(payload)
    cfg, row = spec["cfg"], spec["row"]
    import keras

    keras.utils.set_random_seed(cfg["seed"])
    start = time.perf_counter()
    result = ROW_FUNCTIONS[row["kind"]](cfg, row)
    result["peak_rss_mb"] = peak_rss_mb()
    result["row_wall_seconds"] = time.perf_counter() - start
    print(RESULT_TAG + json.dumps(result), flush=True)


# ============================================================================ plan (parent side)
def plan_rows(args, cfg, work_dir):
    """The rows to run, in order."""
    rows = []
    sections = set(args.sections.split(","))
    presets = [p for p in args.presets.split(",") if p]
    jits = [j for j in args.jit_compile.split(",") if j]
    if "units" in sections:
        rows.append({"id": "units", "kind": "units"})
    if "steps" in sections:
        variants = presets + ["reference"]
        if args.levers:
            variants += ["pat+no_validate", "at_alp+two_pass", "at_alp+split", "pat+xla",
                         "at_alp+xla", "reference+xla"]
        rows.append({"id": "steps", "kind": "steps", "variants": variants})
    if "epochs" in sections:
        variants = presets + ["reference"]
        if args.levers:
            variants += ["pat+xla", "reference+xla", f"pat+spe{args.spe}", "pat+no_validate",
                         "at_alp+two_pass", "at_alp+split", "at_alp+xla"]
        if args.art:
            variants.append("art")
        rows.append({"id": "epochs", "kind": "epochs", "variants": variants})
    if "train" in sections:
        for jit in jits:
            suffix = "" if jit == "none" else f"+xla_{jit}"
            for method in presets:
                if method == "standard" and jit == "attack":
                    continue
                rows.append({"id": f"train/{method}{suffix}", "kind": "preset", "method": method,
                             "jit": jit})
            if jit in ("none", "step"):
                rows.append({"id": f"train/reference{suffix}", "kind": "reference", "jit": jit})
        if args.levers:
            have = {r["id"] for r in rows}
            levers = [
                {"id": "train/pat+xla_step", "kind": "preset", "method": "pat", "jit": "step"},
                {"id": "train/pat+xla_attack", "kind": "preset", "method": "pat", "jit": "attack"},
                {"id": "train/reference+xla_step", "kind": "reference", "jit": "step"},
                {"id": f"train/pat+spe{args.spe}", "kind": "preset", "method": "pat",
                 "steps_per_execution": args.spe},
                {"id": f"train/pat+xla_step+spe{args.spe}", "kind": "preset", "method": "pat",
                 "jit": "step", "steps_per_execution": args.spe},
                {"id": "train/pat-validate", "kind": "preset", "method": "pat",
                 "validate_inputs": False},
                {"id": "train/at_alp+xla_step", "kind": "preset", "method": "at_alp",
                 "jit": "step"},
                {"id": "train/at_alp+xla_attack", "kind": "preset", "method": "at_alp",
                 "jit": "attack"},
                {"id": "train/at_alp+two_pass", "kind": "preset", "method": "at_alp",
                 "paired": "two_pass"},
                {"id": "train/at_alp+split", "kind": "preset", "method": "at_alp",
                 "paired": "split"},
                {"id": "train/pat+mixed_float16", "kind": "preset", "method": "pat",
                 "policy": "mixed_float16"},
                {"id": "train/pat+mixed_bfloat16", "kind": "preset", "method": "pat",
                 "policy": "mixed_bfloat16"},
            ]
            rows += [r for r in levers if r["id"] not in have]
        if args.art:
            rows.append({"id": "train/art_madry_pgd", "kind": "art_trainer"})
    if "attacks" in sections:
        weights = str(Path(work_dir) / "attacked.weights.h5")
        rows.append({"id": "prepare", "kind": "prepare", "path": weights})
        for name in [a for a in args.attacks.split(",") if a]:
            base = {"kind": "attack", "attack": name, "weights": weights}
            points = args.art_autoattack_points if name.startswith("autoattack") else None
            ours = {"id": f"attack/ours/{name}", "library": "ours", **base}
            if points:
                ours.update(id=f"attack/ours/{name}@{points}", points=points)
            rows.append(ours)
            if args.levers and name in ("fgsm", "pgd20"):
                rows.append({**ours, "id": ours["id"] + "+xla", "jit": True})
            if args.art:
                art = {"id": f"attack/art/{name}", "library": "art", **base}
                if points:
                    art.update(id=f"attack/art/{name}@{points}", points=points)
                rows.append(art)
    return rows


REPEATED_KINDS = ("units", "steps", "epochs", "preset", "reference", "art_trainer")


def merge_runs(runs):
    """One result from repeated runs of a row: the median of every number (the
    maximum for peak memory); the first run's other fields."""
    good = [r for r in runs if "error" not in r]
    if not good:
        return runs[0]
    merged = dict(good[0])
    for key, value in good[0].items():
        values = [r.get(key) for r in good]
        if isinstance(value, (int, float)) and not isinstance(value, bool) \
                and all(isinstance(v, (int, float)) for v in values):
            merged[key] = max(values) if key == "peak_rss_mb" else statistics.median(values)
        elif isinstance(value, dict) and all(isinstance(v, dict) for v in values):
            merged[key] = {k: statistics.median([v[k] for v in values])
                           if all(isinstance(v.get(k), (int, float)) for v in values) else value[k]
                           for k in value}
    if len(runs) > 1:
        merged["repeats"] = len(good)
        merged["repeat_images_per_second"] = [r.get("images_per_second") for r in good]
        merged["repeat_loadavg_1min_before"] = [r.get("loadavg_1min_before") for r in good]
    return merged


def run_row(cfg, row, timeout):
    """Runs one row in a fresh interpreter; returns its result dict."""
    payload = json.dumps({"cfg": cfg, "row": row})
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--_child", payload],
                              capture_output=True, text=True, timeout=timeout,
                              env=os.environ.copy())
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    wall = time.perf_counter() - start
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_TAG)]
    if proc.returncode != 0 or not lines:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        return {"error": f"exit code {proc.returncode}", "stderr_tail": tail,
                "process_wall_seconds": wall}
    result = json.loads(lines[-1][len(RESULT_TAG):])
    result["process_wall_seconds"] = wall
    result["loadavg_1min_before"] = load_before
    result["loadavg_1min_after"] = os.getloadavg()[0]
    return result


# ============================================================================ report
def cost_model(row, units, cfg):
    """Predicted seconds per batch from the unit costs, or None."""
    if not units or row["kind"] not in ("preset", "reference", "art_trainer"):
        return None
    method = row.get("method", "pat")
    jit = row.get("jit", "none")
    grad = units["t_grad_xla"] if jit in ("step", "attack") else units["t_grad"]
    xla_train = jit == "step"
    train = units["t_train_xla"] if xla_train else units["t_train"]
    train2 = units["t_train2_xla"] if xla_train else units["t_train2"]
    k = cfg["pgd_steps"]
    if method == "standard":
        return train
    if method == "fast":
        return grad + train
    if method in PAIRED:
        # TRADES also needs one clean forward for the KL target of its attack.
        forward = units["t_forward_xla" if jit != "none" else "t_forward"]
        extra = forward if method == "trades" else 0
        return k * grad + train2 + extra
    return k * grad + train


def summarize(rows, results, cfg):
    """Derived ratios, the target checks and printable tables."""
    by_id = {r["id"]: (r, results.get(r["id"], {})) for r in rows}
    units = results.get("units") if "error" not in results.get("units", {"error": 1}) else None

    def ips(row_id):
        res = by_id.get(row_id, (None, {}))[1]
        return res.get("images_per_second")

    std = ips("train/standard")
    ref = ips("train/reference")
    train_rows = []
    for row in rows:
        if row["kind"] not in ("preset", "reference", "art_trainer"):
            continue
        res = results.get(row["id"], {})
        entry = {"id": row["id"], "images_per_second": res.get("images_per_second"),
                 "peak_rss_mb": res.get("peak_rss_mb"), "rss_setup_mb": res.get("rss_setup_mb"),
                 "error": res.get("error")}
        value = res.get("images_per_second")
        if value:
            batch_seconds = cfg["batch_size"] / value
            entry["seconds_per_batch"] = batch_seconds
            if std:
                entry["time_vs_standard"] = std / value
            if ref:
                entry["throughput_vs_reference"] = value / ref
            predicted = cost_model(row, units, cfg)
            if predicted:
                entry["cost_model_seconds_per_batch"] = predicted
                entry["measured_vs_cost_model"] = batch_seconds / predicted
        train_rows.append(entry)
    attack_rows = []
    for row in rows:
        if row["kind"] != "attack":
            continue
        res = results.get(row["id"], {})
        entry = {"id": row["id"], **{k: res.get(k) for k in (
            "points", "images_per_second", "robust_accuracy", "clean_accuracy", "max_linf",
            "peak_rss_mb", "rss_setup_mb", "error", "not_available")}}
        if row["library"] == "ours" and not row.get("jit"):
            art_id = row["id"].replace("attack/ours/", "attack/art/")
            art_res = results.get(art_id, {})
            same_points = art_res.get("points") == res.get("points")
            if art_res.get("images_per_second") and res.get("images_per_second") and same_points:
                entry["speedup_vs_art"] = res["images_per_second"] / art_res["images_per_second"]
                entry["art_robust_accuracy"] = art_res.get("robust_accuracy")
        attack_rows.append(entry)

    targets = []

    def target(name, value, threshold, holds, detail=""):
        targets.append({"target": name, "value": value, "threshold": threshold,
                        "holds": None if value is None else bool(holds), "detail": detail})

    pat = ips("train/pat")
    at_alp = ips("train/at_alp")
    art = ips("train/art_madry_pgd")

    def ratio(a, b):
        return a / b if a and b else None

    epochs = (results.get("epochs") or {}).get("images_per_second", {})
    epoch_rows = []
    for variant, value in epochs.items():
        method, _, option = variant.partition("+")
        pseudo = {"kind": "art_trainer" if method == "art" else "preset",
                  "method": "pat" if method in ("reference", "art") else method,
                  "jit": "step" if option == "xla" else "none"}
        entry = {"variant": variant, "images_per_second": value}
        if epochs.get("standard"):
            entry["time_vs_standard"] = epochs["standard"] / value
        if epochs.get("reference"):
            entry["throughput_vs_reference"] = value / epochs["reference"]
        predicted = cost_model(pseudo, units, cfg)
        if predicted:
            entry["measured_vs_cost_model"] = cfg["batch_size"] / value / predicted
        epoch_rows.append(entry)
    for a, b, label, wanted in (
            ("pat", "reference", "pat / reference loop, interleaved epochs", 0.9),
            ("pat+xla", "reference+xla", "pat / reference loop, interleaved epochs, both XLA",
             0.9)):
        value = ratio(epochs.get(a), epochs.get(b))
        if value is not None:
            target(label, value, f">= {wanted}", value >= wanted)
    if epochs.get("pat") and epochs.get("at_alp"):
        value = epochs["pat"] / epochs["at_alp"]
        target("at_alp / pat epoch time, interleaved epochs", value, "<= 1.25", value <= 1.25)
    if epochs.get("pat+xla") and epochs.get("at_alp+xla"):
        value = epochs["pat+xla"] / epochs["at_alp+xla"]
        target("at_alp / pat epoch time, interleaved epochs, both XLA", value, "<= 1.25",
               value <= 1.25)
    if epochs.get("pat") and epochs.get("art"):
        value = epochs["pat"] / epochs["art"]
        target("pat / ART AdversarialTrainerMadryPGD, interleaved", value, ">= 20", value >= 20)
    for pat_id, ref_id, label in (
            ("train/pat", "train/reference", "pat / reference loop, separate processes"),
            ("train/pat+xla_step", "train/reference+xla_step", "pat / reference loop, separate "
                                                               "processes, both XLA")):
        value = ratio(ips(pat_id), ips(ref_id))
        if value is not None:
            target(label, value, ">= 0.9", value >= 0.9)
    ours = {k: v for k, v in ((r["id"], ips(r["id"])) for r in rows
                              if r.get("method") == "pat" and not r.get("paired")) if v}
    refs = {k: v for k, v in ((r["id"], ips(r["id"])) for r in rows
                              if r["kind"] == "reference") if v}
    if ours and refs:
        best_ours, best_ref = max(ours, key=ours.get), max(refs, key=refs.get)
        value = ours[best_ours] / refs[best_ref]
        target("best pat row / best reference row, separate processes", value, ">= 0.9",
               value >= 0.9,
               f"{best_ours} vs {best_ref}")
    steps = results.get("steps", {}).get("ms_per_step", {})
    if steps.get("pat") and steps.get("reference"):
        value = steps["reference"] / steps["pat"]
        target("pat / reference, compiled step alone (interleaved)", value, ">= 0.9",
               value >= 0.9)
    if steps.get("pat+xla") and steps.get("reference+xla"):
        value = steps["reference+xla"] / steps["pat+xla"]
        target("pat / reference, compiled step alone, both XLA", value, ">= 0.9", value >= 0.9)
    if steps.get("pat") and steps.get("at_alp"):
        value = steps["at_alp"] / steps["pat"]
        target("at_alp / pat time, compiled step alone (interleaved)", value, "<= 1.25",
               value <= 1.25)
    value = ratio(pat, at_alp)
    target("at_alp / pat epoch time, separate processes", value, "<= 1.25",
           value is not None and value <= 1.25)
    value = ratio(ips("train/pat+xla_step"), ips("train/at_alp+xla_step"))
    if value is not None:
        target("at_alp / pat epoch time, separate processes, both XLA", value, "<= 1.25",
               value <= 1.25)
    value = ratio(pat, art)
    target("pat / ART AdversarialTrainerMadryPGD, separate processes", value, ">= 20",
           value is not None and value >= 20)
    fastest = [e for e in train_rows if e.get("images_per_second")]
    if units and fastest:
        best = max(fastest, key=lambda e: e["images_per_second"])
        value = units["input_pipeline_images_per_second"] / best["images_per_second"]
        target("input pipeline alone / fastest training row", value, "> 1 (not the bottleneck)",
               value > 1, best["id"])
    for entry in attack_rows:
        if "speedup_vs_art" in entry:
            ours_acc, art_acc = entry["robust_accuracy"], entry["art_robust_accuracy"]
            target(f"{entry['id']} speed / ART's", entry["speedup_vs_art"],
                   ">= 5 at robust acc <= ART's",
                   entry["speedup_vs_art"] >= 5 and ours_acc <= art_acc,
                   f"robust accuracy ours {ours_acc:.3f} vs ART {art_acc:.3f}")
    return {"units": units, "steps": results.get("steps"), "epochs": epoch_rows,
            "train": train_rows,
            "attacks": attack_rows, "targets": targets}


def _fmt(value, spec=".1f"):
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    return format(value, spec)


def format_tables(summary, cfg):
    out = []
    units = summary["units"]
    if units:
        out.append(f"Unit costs, batch {int(units['batch_size'])} "
                   f"({int(units['params']):,} weights), ms "
                   "(no XLA / XLA):")
        for key, label in (("t_forward", "forward (inference)"),
                           ("t_grad", "forward + input gradient (one attack step)"),
                           ("t_train", "training step, B"), ("t_train2", "training step, 2B")):
            out.append(f"  {label:<45} {1e3 * units[key]:8.2f} / {1e3 * units[key + '_xla']:8.2f}")
        pipeline = units["input_pipeline_images_per_second"]
        out.append(f"  input pipeline alone: {pipeline:,.0f} img/s")
        out.append("")
    steps = summary.get("steps") or {}
    if steps.get("ms_per_step"):
        ms = steps["ms_per_step"]
        ref = ms.get("reference")
        out.append("Compiled train_step alone, one process, round-robin "
                   f"({int(steps.get('rounds'))} "
                   "rounds), ms per step (vs reference):")
        for name, value in ms.items():
            rel = f"  ({value / ref:.2f}x)" if ref else ""
            out.append(f"  {name:<45} {value:8.2f}{rel}")
        out.append("")
    if summary.get("epochs"):
        out.append("| interleaved epochs (one process) | img/s | time vs standard | vs reference "
                   "| measured / cost model |")
        out.append("| --- | ---: | ---: | ---: | ---: |")
        for e in summary["epochs"]:
            out.append(f"| {e['variant']} | {_fmt(e['images_per_second'], ',.0f')} | "
                       f"{_fmt(e.get('time_vs_standard'), '.2f')}x | "
                       f"{_fmt(e.get('throughput_vs_reference'), '.2f')}x | "
                       f"{_fmt(e.get('measured_vs_cost_model'), '.2f')} |")
        out.append("")
    out.append("| training row (own process) | img/s | time vs standard | vs reference "
               "| measured / cost model | peak RSS MB (after setup) |")
    out.append("| --- | ---: | ---: | ---: | ---: | ---: |")
    for e in summary["train"]:
        if e.get("error"):
            out.append(f"| {e['id']} | error: {e['error']} | | | | |")
            continue
        out.append(f"| {e['id']} | {_fmt(e['images_per_second'], ',.0f')} | "
                   f"{_fmt(e.get('time_vs_standard'), '.2f')}x | "
                   f"{_fmt(e.get('throughput_vs_reference'), '.2f')}x | "
                   f"{_fmt(e.get('measured_vs_cost_model'), '.2f')} | "
                   f"{_fmt(e['peak_rss_mb'], ',.0f')} ({_fmt(e['rss_setup_mb'], ',.0f')}) |")
    if summary["attacks"]:
        out.append("")
        out.append("| attack row | points | img/s | robust acc | speed vs ART | ART robust acc "
                   "| max Linf | peak RSS MB |")
        out.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for e in summary["attacks"]:
            if e.get("not_available"):
                out.append(f"| {e['id']} | not available | | | | | | |")
                continue
            if e.get("error"):
                out.append(f"| {e['id']} | error: {e['error']} | | | | | | |")
                continue
            out.append(f"| {e['id']} | {e['points']} | {_fmt(e['images_per_second'], ',.1f')} | "
                       f"{_fmt(e['robust_accuracy'], '.3f')} | "
                       f"{_fmt(e.get('speedup_vs_art'), '.1f')}x | "
                       f"{_fmt(e.get('art_robust_accuracy'), '.3f')} | "
                       f"{_fmt(e['max_linf'], '.4f')} | {_fmt(e['peak_rss_mb'], ',.0f')} |")
    out.append("")
    out.append("| target | value | wanted | holds |")
    out.append("| --- | ---: | --- | --- |")
    for t in summary["targets"]:
        detail = f" ({t['detail']})" if t["detail"] else ""
        out.append(f"| {t['target']}{detail} | {_fmt(t['value'], '.3f')} | {t['threshold']} | "
                   f"{_fmt(t['holds'])} |")
    return "\n".join(out)


def machine_info():
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = {}
    for package in ("tensorflow-cpu", "tensorflow", "keras", "adversarial-robustness-toolbox",
                    "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                                text=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain"], cwd=REPO,
                                    capture_output=True, text=True).stdout.strip())
    except OSError:
        commit, dirty = None, None
    return {"nproc": os.cpu_count(), "cpu_model": cpu, "python": platform.python_version(),
            "platform": platform.platform(), "versions": versions, "git_commit": commit,
            "git_dirty": dirty, "gpu": "none (CPU only)"}


# ============================================================================ flags
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="About 1.5 minutes on an idle 2-core machine, 3 under load: presets "
                             "standard/pat/at_alp, the reference loop, 3 ART batches, FGSM and "
                             "PGD-20 (with and without random start) on 128 points, no levers.")
    parser.add_argument("--model", default="small_cnn",
                        choices=["small_cnn", "tiny_resnet", "resnet18"],
                        help="small_cnn / tiny_resnet on 8x8 digits; resnet18 (CIFAR ResNet-18) on "
                             "random 32x32x3 images.")
    parser.add_argument("--batch_size", type=int, default=64, help="Images per training batch.")
    parser.add_argument("--pgd_steps", type=int, default=7,
                        help="K, PGD steps of the training attack.")
    parser.add_argument("--eps", type=float, default=None,
                        help="L-inf radius on the [0, 1] scale; default 0.1 for digits, 8/255 for "
                             "resnet18.")
    parser.add_argument("--step_size", type=float, default=None,
                        help="Training attack step; default eps / 4.")
    parser.add_argument("--timed_epochs", type=int, default=None,
                        help="Epochs timed after the warm-up epoch (median reported); default 10, "
                             "quick 3.")
    parser.add_argument("--steps_per_epoch", type=int, default=None,
                        help="Batches per epoch; default a full pass over digits, 2 for resnet18.")
    parser.add_argument("--presets", default=None,
                        help=f"Comma list of presets to time; default all ({','.join(PRESETS)}).")
    parser.add_argument("--jit_compile", default="none",
                        help="Comma list of XLA variants under which every preset is timed: none "
                             "(no XLA), step (compile(jit_compile=True)), attack (only the attack "
                             "loop XLA-compiled). The lever rows add pat/at_alp under step and "
                             "attack anyway.")
    parser.add_argument("--epoch_rounds", type=int, default=None,
                        help="Rounds of the interleaved epochs section (default 12, quick 4; 1 "
                             "for resnet18).")
    parser.add_argument("--spe", type=int, default=8, help="steps_per_execution of the lever row.")
    parser.add_argument("--sections", default="units,steps,epochs,train,attacks",
                        help="Comma list of units, steps, epochs, train, attacks.")
    parser.add_argument("--attacks", default=None,
                        help="Comma list of fgsm, pgd20, pgd20-nors (no random start: ours and "
                             "ART's must agree exactly), apgd-ce, autoattack-fast, "
                             "autoattack-standard.")
    parser.add_argument("--attack_points", type=int, default=None,
                        help="Test points attacked (default 360 = all digits test images, "
                             "quick 128).")
    parser.add_argument("--attack_batch", type=int, default=256,
                        help="Batch size of every attack, ours and ART's.")
    parser.add_argument("--art_batches", type=int, default=None,
                        help="ART trainer batches timed after one warm-up batch (default 8, "
                             "quick 3).")
    parser.add_argument("--art_autoattack_points", type=int, default=64,
                        help="Points for both AutoAttack rows, ours and ART's (ART's Square and "
                             "DeepFool runs are slow).")
    parser.add_argument("--repeats", type=int, default=1,
                        help="Run the units and train rows this many times, in turn (A B C A B "
                             "C ...), and report the median: spreads the load of other "
                             "processes over the rows.")
    parser.add_argument("--prepare_epochs", type=int, default=None,
                        help="Epochs of package pat training (Adam 3e-3) of the attacked model "
                             "(default 30, quick 20).")
    parser.add_argument("--no_levers", dest="levers", action="store_false", default=None,
                        help="Skip the lever rows (on by default, off with --quick).")
    parser.add_argument("--levers", dest="levers", action="store_true")
    parser.add_argument("--no_art", dest="art", action="store_false",
                        help="Skip every ART row.")
    parser.add_argument("--row_timeout", type=float, default=1800.0,
                        help="Seconds after which one row is abandoned.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None,
                        help="JSON output path (default bench/results/speed_<model>.json, "
                             "speed_<model>_quick.json with --quick).")
    parser.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def make_config(args):
    digits = args.model in ("small_cnn", "tiny_resnet")
    eps = args.eps if args.eps is not None else (0.1 if digits else 8 / 255)
    quick = args.quick
    if args.timed_epochs is None:
        args.timed_epochs = 3 if quick else 10
    if args.steps_per_epoch is None and not digits:
        args.steps_per_epoch = 2
    if args.presets is None:
        args.presets = "standard,pat,at_alp" if quick else ",".join(PRESETS)
    if args.attacks is None:
        args.attacks = "fgsm,pgd20,pgd20-nors" if quick else \
            "fgsm,pgd20,pgd20-nors,apgd-ce,autoattack-fast,autoattack-standard"
    if args.levers is None:
        args.levers = not quick
    if args.art_batches is None:
        args.art_batches = 3 if quick else 8
    return {
        "model": args.model,
        "data": "digits" if digits else "random",
        "input_shape": [8, 8, 1] if digits else [32, 32, 3],
        "batch_size": args.batch_size,
        "pgd_steps": args.pgd_steps,
        "eps": eps,
        "step_size": args.step_size if args.step_size is not None else eps / 4,
        "timed_epochs": args.timed_epochs,
        "steps_per_epoch": args.steps_per_epoch,
        "attack_points": args.attack_points or (128 if quick else 360),
        "attack_batch": args.attack_batch,
        "attack_seconds": 10.0 if quick else 20.0,
        "art_batches": args.art_batches,
        "prepare_epochs": args.prepare_epochs if args.prepare_epochs is not None else
        (20 if quick else 30) if digits else 0,
        "unit_seconds": 0.5 if quick else 1.5,
        "step_seconds": 5.0 if quick else 20.0,
        "epoch_rounds": args.epoch_rounds or ((4 if quick else 12) if digits else 1),
        # Big models (seconds per call on a CPU) get fewer timed calls.
        "min_rounds": 7 if digits else 3,
        "warmup_calls": 2 if digits else 1,
        "seed": args.seed,
    }


def main(argv=None):
    args = parse_args(argv)
    if args._child is not None:
        child_main(args._child)
        return
    cfg = make_config(args)
    suffix = "_quick" if args.quick else ""
    out = Path(args.out) if args.out else \
        REPO / "bench" / "results" / f"speed_{args.model}{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    # Scratch space (the attacked model's weights) outside the repository.
    work_dir = Path(tempfile.mkdtemp(prefix=f"atalp_speed_{args.model}_"))
    rows = plan_rows(args, cfg, work_dir)
    command = " ".join([Path(sys.executable).name, "bench/speed.py"] + sys.argv[1:])
    print(f"{len(rows)} rows, each in a fresh process; config: {json.dumps(cfg)}", flush=True)
    started = time.time()
    runs = {row["id"]: [] for row in rows}
    repeated = [row for row in rows if row["kind"] in REPEATED_KINDS]
    schedule = repeated * args.repeats + [row for row in rows if row["kind"] not in REPEATED_KINDS]
    for row in schedule:
        result = run_row(cfg, row, args.row_timeout)
        runs[row["id"]].append(result)
        shown = result.get("images_per_second")
        shown = shown if isinstance(shown, (int, float)) else None
        status = result.get("error") or ("not available" if result.get("not_available") else
                                         f"{shown:,.1f} img/s" if shown else "done")
        print(f"  {row['id']:<34} {status}  ({result.get('process_wall_seconds', 0):.0f} s, "
              f"load {result.get('loadavg_1min_before', float('nan')):.1f})", flush=True)
    results = {row_id: merge_runs(values) for row_id, values in runs.items()}
    summary = summarize(rows, results, cfg)
    report = {
        "command": command,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "total_seconds": time.time() - started,
        "machine": machine_info(),
        "config": cfg,
        "memory_method": "each row runs in a fresh subprocess; peak_rss_mb is its ru_maxrss "
                         "(includes the TensorFlow import), rss_setup_mb its VmRSS after imports, "
                         "data and model build, before the timed work",
        "rows": [{**row, "result": results.get(row["id"])} for row in rows],
        "summary": summary,
    }
    out.write_text(json.dumps(report, indent=2))
    shutil.rmtree(work_dir, ignore_errors=True)
    print()
    print(format_tables(summary, cfg))
    print(f"\nWrote {out} ({report['total_seconds']:.0f} s)")


if __name__ == "__main__":
    main()
