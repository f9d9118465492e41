"""The hand-written PGD-AT training step: the practical limit for ``pat``."""


def reference_pgd_step(model, optimizer, eps, step_size, num_steps, jit_compile=False, seed=0):
    """Minimal Madry PGD-K adversarial training step, written by hand.

    Random start, K signed-gradient steps in inference mode with projection,
    then one training step on the adversarial batch. No metrics, no checks.

    Returns:
        ``step(x, y) -> loss``, one `tf.function` per call shape family.
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


def reference_for(cfg, classifier, jit_compile=False):
    """The reference step with the bench's attack settings and a fresh Adam."""
    import keras

    return reference_pgd_step(classifier, keras.optimizers.Adam(1e-3), cfg["eps"],
                              cfg["step_size"], cfg["pgd_steps"], jit_compile=jit_compile,
                              seed=cfg["seed"])


def run_epoch(step, dataset):
    """Seconds of one pass of ``step`` over ``dataset`` (a Python loop, as the
    keras-io custom training loop guide writes it)."""
    import time

    start = time.perf_counter()
    loss = None
    for x, y in dataset:
        loss = step(x, y)
    if loss is not None:
        loss.numpy()
    return time.perf_counter() - start
