"""The seam on TensorFlow: the ops the attacks used before the seam existed,
unchanged (a GradientTape, ``tf.while_loop`` with one iteration in flight,
``tf.function`` with an input signature, uint64 keys)."""

import keras
import tensorflow as tf

KEY_SHAPE = ()
KEY_DTYPE = "uint64"


def value_and_grad(fn, x):
    """``(target, aux, d target / d x)`` for ``fn(x) -> (target, aux)``."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        target, aux = fn(x)
    grad = tape.gradient(target, x, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return target, aux, grad


def while_loop(cond, body, loop_vars):
    # One iteration in flight: each step needs the previous one's result, and
    # more would only hold more activations in memory.
    return tf.while_loop(cond, body, tuple(loop_vars), parallel_iterations=1)


stop_gradient = tf.stop_gradient


def compiled(fn, signature, jit_compile=False, stateful=None):
    """A ``tf.function`` of ``fn`` with the input signature ``[(shape, dtype)]``
    (``None`` dimensions free, so a new batch size does not retrace).
    ``stateful`` is for JAX: TensorFlow reads variables inside the graph."""
    del stateful
    specs = [tf.TensorSpec(shape, dtype) for shape, dtype in signature]
    return tf.function(fn, input_signature=specs, jit_compile=jit_compile)


def executing_eagerly(*tensors):
    del tensors
    return tf.executing_eagerly()


init_scope = tf.init_scope
do_not_convert = tf.autograph.experimental.do_not_convert


# Keyed random numbers (see attacks/keys.py for the scheme).
_GOLDEN = 0x9E3779B97F4A7C15
_LANE = 0xD1B54A32D192ED03


def _u64(value):
    return tf.constant(value, tf.uint64)


def _mix64(z):
    z = tf.bitwise.bitwise_xor(z, tf.bitwise.right_shift(z, _u64(30)))
    z = z * _u64(0xBF58476D1CE4E5B9)
    z = tf.bitwise.bitwise_xor(z, tf.bitwise.right_shift(z, _u64(27)))
    z = z * _u64(0x94D049BB133111EB)
    return tf.bitwise.bitwise_xor(z, tf.bitwise.right_shift(z, _u64(31)))


def _as_u64(value):
    value = tf.convert_to_tensor(value)
    if value.dtype == tf.uint64:
        return value
    return tf.cast(tf.cast(value, tf.int64), tf.uint64)


def example_keys(base, ids):
    return _mix64(_as_u64(base) + (_as_u64(ids) + _u64(1)) * _u64(_GOLDEN))


def fold_key(keys, value):
    salt = _mix64((_as_u64(value) + _u64(1)) * _u64(_LANE))
    return _mix64(tf.bitwise.bitwise_xor(_as_u64(keys), salt))


def keyed_uniform(keys, shape):
    size = 1
    for d in shape:
        size *= d
    lanes = tf.cast(tf.range(1, max(size, 1) + 1, dtype=tf.int64), tf.uint64)
    z = _mix64(_as_u64(keys)[:, None] + lanes[None, :] * _u64(_GOLDEN))
    u = tf.cast(tf.bitwise.right_shift(z, _u64(40)), tf.float32) * (1.0 / 2 ** 24)
    return tf.reshape(u, [-1] + list(shape))


# The training step (ATALPModel.train_step / test_step). TensorFlow steps are
# stateful: they read and assign the variables themselves.
STATELESS_STEPS = False
# Input value checks run as asserts inside the traced step (batch_checks).
GRAPH_ASSERTS = True


def variable_grads(fn, variables, state=()):
    """``(outputs, d outputs[-1] / d variables)`` for ``fn() -> outputs``, at
    the variables' current values; ``fn``'s assignments happen as usual.
    ``state`` is for JAX (TensorFlow reads and writes variables in place)."""
    del state
    with tf.GradientTape() as tape:
        outputs = fn()
    return outputs, tape.gradient(outputs[-1], variables)


def grads_at(fn, variables, values, wrt, state=()):
    """``fn()`` with ``variables`` read as ``values`` (a ``StatelessScope``).

    Returns:
        ``(outputs, grads, new_state)``: the gradients of ``outputs[-1]``
        with respect to ``values[i]`` for ``i`` in ``wrt`` (zeros where
        unconnected), and per variable of ``state`` the value ``fn``
        assigned to it (None if none). Nothing is written.
    """
    with tf.GradientTape() as tape:
        tape.watch(values)
        with keras.StatelessScope(state_mapping=list(zip(variables, values))) as scope:
            outputs = fn()
    grads = tape.gradient(outputs[-1], [values[i] for i in wrt],
                          unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return outputs, grads, [scope.get_current_value(v) for v in state]


def snapshot(variables):
    """The variables' current values, as tensors that later writes do not change."""
    return [tf.identity(v.value) for v in variables]


def apply_gradients(optimizer, grads, variables):
    optimizer.apply(grads, variables)


def cond(pred, true_fn, false_fn, state=()):
    """``tf.cond``; ``state`` is for JAX."""
    del state
    return tf.cond(pred, true_fn, false_fn)


def replicas_in_sync():
    """Replicas of the current ``tf.distribute`` strategy (1 without one)."""
    return tf.distribute.get_strategy().num_replicas_in_sync


def global_sum(value):
    """Sum of ``value`` (a tensor or a list of them) over the replicas in sync
    (itself on one device)."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce("sum", value)


def restore_state(variable_groups, state):
    """For JAX (TensorFlow steps do not take the values out of variables)."""
    del variable_groups, state
