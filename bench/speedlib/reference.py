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


def reference_pgd_step_jax(model, optimizer, eps, step_size, num_steps, seed=0):
    """The same Madry PGD-K step written by hand for JAX, as Keras' guide to a
    custom JAX training step has it: stateless calls, ``jax.grad`` for the
    input gradient, ``optimizer.stateless_apply``, all in one ``jax.jit``.

    Returns:
        ``run(batches) -> loss``: one pass over ``batches`` (pairs of arrays),
        the state carried between calls (the model's variables are not written
        back: this is a speed reference only).
    """
    import jax
    import jax.numpy as jnp
    import keras

    optimizer.build(model.trainable_variables)

    def mean_ce(trainable, non_trainable, x, y, training):
        logits, non_trainable = model.stateless_call(trainable, non_trainable, x,
                                                     training=training)
        loss = keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
        return jnp.mean(loss), non_trainable

    @jax.jit
    def step(state, x, y, key):
        trainable, non_trainable, optimizer_vars = state
        key, start = jax.random.split(key)
        x_adv = jnp.clip(x + jax.random.uniform(start, x.shape, minval=-eps, maxval=eps), 0, 1)
        input_grad = jax.grad(lambda xa: mean_ce(trainable, non_trainable, xa, y, False)[0])
        for _ in range(num_steps):
            x_adv = x_adv + step_size * jnp.sign(input_grad(x_adv))
            x_adv = jnp.clip(jnp.clip(x_adv, x - eps, x + eps), 0.0, 1.0)
        (loss, non_trainable), grads = jax.value_and_grad(mean_ce, has_aux=True)(
            trainable, non_trainable, x_adv, y, True)
        trainable, optimizer_vars = optimizer.stateless_apply(optimizer_vars, grads, trainable)
        return (trainable, non_trainable, optimizer_vars), loss, key

    carried = {"state": ([v.value for v in model.trainable_variables],
                         [v.value for v in model.non_trainable_variables],
                         [v.value for v in optimizer.variables]),
               "key": jax.random.PRNGKey(seed)}

    def run(batches):
        loss = None
        for x, y in batches:
            carried["state"], loss, carried["key"] = step(carried["state"], x, y,
                                                          carried["key"])
        return None if loss is None else float(loss)  # waits for the last step

    return run
