"""Training rows: each function measures one row inside a child process.

Variant names: a preset (``pat``), ``reference`` (the hand-written loop) or
``art`` (ART's trainer), optionally ``+option`` (``xla``, ``no_validate``,
``two_pass``, ``split``, ``spe<N>``).
"""

import itertools
import statistics
import time

from . import reference, timing, variants, workloads


def row_units(cfg, row):
    """Unit costs on one batch of B images (and 2B for the paired training pass):
    forward, forward + input gradient, training step, without and with XLA,
    timed in round-robin; and the input pipeline alone."""
    import keras
    import tensorflow as tf

    classifier, _ = workloads.build_classifier(cfg)
    train_ds, *_, images = workloads.load_data(cfg)
    x, y = next(iter(train_ds))
    x2, y2 = tf.concat([x, x], 0), tf.concat([y, y], 0)
    # Iterated from Python, slower than fit's in-graph iterator: a lower bound.
    epoch_ds = workloads.epoch_dataset(cfg, train_ds)
    data_times = [reference.run_epoch(lambda *_: None, epoch_ds) for _ in range(4)]
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    optimizer = keras.optimizers.Adam(1e-3)
    variables = classifier.trainable_variables
    setup = timing.rss_mb()
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
        fns["t_forward" + suffix] = lambda f=forward: timing.sync(f(x))
        fns["t_grad" + suffix] = lambda f=grad_pass: timing.sync(f(x, y))
        fns["t_train" + suffix] = lambda f=train_pass: timing.sync(f(x, y))
        fns["t_train2" + suffix] = lambda f=train_pass: timing.sync(f(x2, y2))
    result = timing.interleaved_medians(fns, min_seconds=cfg["unit_seconds"],
                                        min_rounds=cfg["min_rounds"], warmup=cfg["warmup_calls"])
    result["batch_size"] = int(x.shape[0])
    result["input_pipeline_images_per_second"] = images / statistics.median(data_times[1:])
    result["params"] = int(classifier.count_params())
    result["rss_setup_mb"] = setup
    return result


def row_preset(cfg, row):
    """One ``ATALPModel.fit`` run in its own process: warm-up plus timed epochs."""
    import keras

    if row.get("policy"):
        # Before any layer is built; compile() then wraps the optimizer in a
        # LossScaleOptimizer for mixed_float16.
        keras.mixed_precision.set_global_policy(row["policy"])
    classifier, stages = workloads.build_classifier(cfg)
    train_ds, *_, images = workloads.load_data(cfg)
    attack = variants.training_attack(cfg, row["method"])
    if attack is not None and row.get("jit") == "attack":
        attack = variants.make_xla_attack(attack)
    option = row.get("paired") or ("" if row.get("validate_inputs", True) else "no_validate")
    model = variants.compiled_model(
        cfg, classifier, stages, row["method"], option, attack=attack,
        jit_compile=row.get("jit") == "step",
        steps_per_execution=row.get("steps_per_execution", 1))
    setup = timing.rss_mb()
    timer = timing.epoch_timer()
    warmup = timing.warmup_epochs(row)
    history = model.fit(train_ds, epochs=warmup + cfg["timed_epochs"],
                        steps_per_epoch=cfg["steps_per_epoch"], verbose=0, callbacks=[timer])
    result = timing.epoch_summary(timer.times, images, warmup)
    result["final_logs"] = {k: float(v[-1]) for k, v in history.history.items()}
    result["rss_setup_mb"] = setup
    return result


def row_reference(cfg, row):
    """The hand-written step in a Python loop, epoch by epoch, in its own process."""
    classifier, _ = workloads.build_classifier(cfg)
    train_ds, *_, images = workloads.load_data(cfg)
    step = reference.reference_for(cfg, classifier, jit_compile=row.get("jit") == "step")
    setup = timing.rss_mb()
    warmup = timing.warmup_epochs(row)
    epoch_ds = workloads.epoch_dataset(cfg, train_ds)
    times = [reference.run_epoch(step, epoch_ds) for _ in range(warmup + cfg["timed_epochs"])]
    result = timing.epoch_summary(times, images, warmup)
    result["rss_setup_mb"] = setup
    return result


def _step_fn(cfg, variant):
    """``fn(x, y) -> loss`` of one compiled training step (no fit loop)."""
    import tensorflow as tf

    method, _, option = variant.partition("+")
    classifier, stages = workloads.build_classifier(cfg)
    if method == "reference":
        return reference.reference_for(cfg, classifier, jit_compile=option == "xla")
    # jit_compile in compile() also drops the input checks (no XLA kernel for
    # Assert), as it does in fit.
    model = variants.compiled_model(cfg, classifier, stages, method, option)
    step = tf.function(model.train_step, jit_compile=option == "xla", reduce_retracing=True)
    return lambda x, y: step((x, y))["loss"]


def row_steps(cfg, row):
    """Milliseconds per compiled ``train_step`` of every variant, all in this
    process, round-robin over the same full batches."""
    train_ds, *_ = workloads.load_data(cfg)
    batches = [b for b in train_ds.take(8) if int(b[0].shape[0]) == cfg["batch_size"]]
    fns = {}
    for variant in row["variants"]:
        fn = _step_fn(cfg, variant)
        fns[variant] = (lambda f, it: lambda: timing.sync(f(*next(it))))(
            fn, itertools.cycle(batches))
    result = timing.interleaved_medians(fns, min_seconds=cfg["step_seconds"],
                                        min_rounds=cfg["min_rounds"], warmup=cfg["warmup_calls"])
    return {"ms_per_step": {k: 1e3 * v for k, v in result.items() if k in fns},
            "rounds": result["rounds"], "batches": len(batches)}


def _epoch_runner(cfg, variant, data):
    """``(run() -> epoch seconds, images per run)`` of one variant."""
    method, _, option = variant.partition("+")
    train_ds, x_train, y_train, images = data
    classifier, stages = workloads.build_classifier(cfg)
    if method == "reference":
        step = reference.reference_for(cfg, classifier, jit_compile=option == "xla")
        epoch_ds = workloads.epoch_dataset(cfg, train_ds)
        return (lambda: reference.run_epoch(step, epoch_ds)), images
    if method == "art":
        trainer = art_trainer(cfg, classifier)
        batch = cfg["batch_size"]
        offsets = itertools.cycle(range(0, len(x_train) - batch + 1, batch))

        def run_art():
            lo = next(offsets)
            start = time.perf_counter()
            trainer.fit(x_train[lo:lo + batch], y_train[lo:lo + batch], nb_epochs=1,
                        batch_size=batch)
            return time.perf_counter() - start
        return run_art, batch
    model = variants.compiled_model(cfg, classifier, stages, method, option)
    timer = timing.epoch_timer()

    def run_fit():
        model.fit(train_ds, epochs=1, steps_per_epoch=cfg["steps_per_epoch"], verbose=0,
                  callbacks=[timer])
        return timer.times[-1]   # the epoch alone, without fit's set-up
    return run_fit, images


def row_epochs(cfg, row):
    """Whole epochs of every variant in this one process, one epoch of each per
    round (round-robin), median over the rounds after two warm-up epochs.

    Memory: the process is shared, so each variant's figure is the growth of
    the resident set while it was built and warmed up (variants built later
    reuse memory the allocator already holds: read it as an indication).
    """
    train_ds, x_train, y_train, *_, images = workloads.load_data(cfg)
    data = (train_ds, x_train, y_train, images)
    runners, counts, memory = {}, {}, {}
    for variant in row["variants"]:
        before = timing.rss_mb()
        run, counts[variant] = _epoch_runner(cfg, variant, data)
        for _ in range(2):  # warm-up: tracing, and XLA's recompilation in epoch 2
            run()
        runners[variant] = run
        memory[variant] = timing.rss_mb() - before
    times = timing.round_robin(runners, timing.fixed_rounds(cfg["epoch_rounds"]))
    per_variant = {}
    for variant, values in times.items():
        median = statistics.median(values)
        per_variant[variant] = {"seconds": median, "times": values,
                                "images_per_second": counts[variant] / median,
                                "rss_growth_mb": memory[variant]}
    return {"images_per_second": {v: r["images_per_second"] for v, r in per_variant.items()},
            "rss_growth_mb": memory, "variants": per_variant, "rounds": cfg["epoch_rounds"]}


def art_classifier(model, cfg, optimizer=None):
    """ART's wrapper of a Keras classifier on [0, 1] images."""
    import keras
    from art.estimators.classification import TensorFlowV2Classifier

    return TensorFlowV2Classifier(
        model, nb_classes=10, input_shape=tuple(cfg["input_shape"]),
        loss_object=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        optimizer=optimizer, clip_values=(0.0, 1.0))


def art_trainer(cfg, classifier):
    """ART's AdversarialTrainerMadryPGD with the bench's PGD settings."""
    import keras
    from art.defences.trainer import AdversarialTrainerMadryPGD

    art = art_classifier(classifier, cfg, optimizer=keras.optimizers.Adam(1e-3))
    return AdversarialTrainerMadryPGD(art, nb_epochs=1, batch_size=cfg["batch_size"],
                                      eps=cfg["eps"], eps_step=cfg["step_size"],
                                      max_iter=cfg["pgd_steps"], num_random_init=1)


def row_art_trainer(cfg, row):
    """ART's trainer, one batch per ``fit`` call; median over ``art_batches``."""
    classifier, _ = workloads.build_classifier(cfg)
    _, x_train, y_train, *_ = workloads.load_data(cfg)
    batch = cfg["batch_size"]
    trainer = art_trainer(cfg, classifier)
    setup = timing.rss_mb()
    times = []
    for i in range(1 + cfg["art_batches"]):
        lo = (i * batch) % max(1, len(x_train) - batch)
        start = time.perf_counter()
        trainer.fit(x_train[lo:lo + batch], y_train[lo:lo + batch], nb_epochs=1, batch_size=batch)
        times.append(time.perf_counter() - start)
    median = statistics.median(times[1:])
    return {"batch_seconds": median, "images_per_second": batch / median,
            "batch_times": times, "batches_timed": cfg["art_batches"], "rss_setup_mb": setup}


def row_costmodel(cfg, row):
    """MACs per image of the workload's model and passes per image per training
    step of every preset (arithmetic only, nothing timed)."""
    from . import costmodel

    classifier, _ = workloads.build_classifier(cfg)
    macs = costmodel.count_macs(classifier)
    passes = {m: costmodel.training_passes(m, cfg["pgd_steps"])
              for m in list(cfg["presets"]) + ["reference"]}
    for entry in passes.values():
        entry["gflops_per_image"] = costmodel.flops_per_image(macs["total"], entry) / 1e9
    return {"macs_per_image": macs["total"], "params": int(classifier.count_params()),
            "passes": passes}
