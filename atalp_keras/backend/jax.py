"""The seam on JAX: ``jax.value_and_grad`` for input gradients,
``jax.lax.while_loop`` for loops, and ``jax.jit`` over explicit variable
values for compiled attacks.

Compiled functions are stateless, as JAX requires: `compiled` passes the
current values of the model's variables (and of the attack's seed
generators) into the jitted function and runs it inside a
``keras.StatelessScope`` mapping each variable to its traced value. That is
what ``Model.stateless_call`` does for one model; the scope does it for every
object the attack touches (the classifier, its folded view, which shares the
classifier's variables, and the seed generators), so the attack code calls
``model(x)`` as it does on TensorFlow. Variables assigned inside (a seed
generator's state) are written back after the call. Nothing is captured as a
constant, so a compiled attack follows the model's weights as they train.

Keyed random numbers use 64-bit integer arithmetic (splitmix64), which JAX
does not have without ``jax_enable_x64`` (a process-wide switch this package
must not flip). A key is therefore a ``(hi, lo)`` pair of uint32 on its last
axis, and the 64-bit add, multiply, xor and shifts are done on the pairs;
the numbers are the TensorFlow backend's, bit for bit.
"""

import contextlib

import jax
import jax.numpy as jnp
import keras
import numpy as np

KEY_SHAPE = (2,)
KEY_DTYPE = "uint32"


def value_and_grad(fn, x):
    """``(target, aux, d target / d x)`` for ``fn(x) -> (target, aux)``."""
    (target, aux), grad = jax.value_and_grad(fn, has_aux=True)(x)
    return target, aux, grad


def while_loop(cond, body, loop_vars):
    return jax.lax.while_loop(lambda v: cond(*v), lambda v: tuple(body(*v)), tuple(loop_vars))


stop_gradient = jax.lax.stop_gradient


def _variables(objects):
    """The Keras variables of models, layers and seed generators, in order."""
    found, seen = [], set()
    for obj in objects:
        if obj is None:
            continue
        if isinstance(obj, keras.random.SeedGenerator):
            variables = [obj.state]
        else:
            variables = list(getattr(obj, "variables", ()))
        for variable in variables:
            if id(variable) not in seen:
                seen.add(id(variable))
                found.append(variable)
    return found


def compiled(fn, signature, jit_compile=False, stateful=None):
    """``fn`` under ``jax.jit``, stateless over the variables of ``stateful()``.

    Args:
        fn: ``fn(*arrays) -> outputs`` calling Keras models and ``keras.random``
            with seed generators.
        signature: Ignored (TensorFlow's input signature); JAX compiles once
            per input shape and dtype.
        jit_compile: Ignored: on JAX every compiled attack runs under XLA.
        stateful: Optional callable returning the models, layers and
            ``SeedGenerator`` objects ``fn`` reads, asked at every call (so a
            cache holding this function need not keep the model alive).
    """
    del signature, jit_compile
    cache = {}

    def run(*args):
        variables = _variables(stateful() if stateful is not None else ())
        key = tuple(id(v) for v in variables)
        if key not in cache:
            assigned = []

            def pure(values, *inner):
                with keras.StatelessScope(state_mapping=list(zip(variables, values))) as scope:
                    before = [scope.get_current_value(v) for v in variables]
                    out = fn(*inner)
                after = [scope.get_current_value(v) for v in variables]
                assigned[:] = [i for i, (b, a) in enumerate(zip(before, after)) if a is not b]
                return out, [after[i] for i in assigned]

            cache[key] = (jax.jit(pure), assigned, variables)
        jitted, assigned, variables = cache[key]
        out, updates = jitted([v.value for v in variables], *args)
        for i, value in zip(assigned, updates):
            variables[i].assign(value)
        return out

    return run


def executing_eagerly(*tensors):
    """False when any of ``tensors`` is being traced (inside ``jax.jit``)."""
    return not any(isinstance(t, jax.core.Tracer) for t in tensors)


def init_scope():
    return contextlib.nullcontext()


def do_not_convert(fn):
    return fn


# Keyed random numbers (see attacks/keys.py for the scheme): 64-bit values as
# (hi, lo) uint32 pairs.
_MASK = 0xFFFFFFFF
_GOLDEN = 0x9E3779B97F4A7C15
_LANE = 0xD1B54A32D192ED03


def _const(value):
    value %= 2 ** 64
    return jnp.uint32(value >> 32), jnp.uint32(value & _MASK)


def _from_int(value):
    """An integer (Python, numpy or a JAX int array) as a u64 pair, negative
    values sign-extended as TensorFlow's int64 -> uint64 cast does."""
    if isinstance(value, (int, np.integer)):
        return _const(int(value))
    if isinstance(value, np.ndarray):
        v = value.astype(np.int64).astype(np.uint64)
        return jnp.asarray((v >> np.uint64(32)).astype(np.uint32)), \
            jnp.asarray((v & np.uint64(_MASK)).astype(np.uint32))
    value = jnp.asarray(value).astype(jnp.int32)
    lo = jax.lax.bitcast_convert_type(value, jnp.uint32)
    return jnp.where(value < 0, jnp.uint32(_MASK), jnp.uint32(0)), lo


def _split(keys):
    keys = jnp.asarray(keys, jnp.uint32)
    return keys[..., 0], keys[..., 1]


def _join(pair):
    hi, lo = jnp.broadcast_arrays(*pair)
    return jnp.stack([hi, lo], axis=-1)


def _add(a, b):
    lo = a[1] + b[1]
    carry = (lo < a[1]).astype(jnp.uint32)
    return a[0] + b[0] + carry, lo


def _mulhi32(x, y):
    """The high 32 bits of the 64-bit product of two uint32."""
    x0, x1 = x & 0xFFFF, x >> 16
    y0, y1 = y & 0xFFFF, y >> 16
    p00, p01, p10, p11 = x0 * y0, x0 * y1, x1 * y0, x1 * y1
    mid = (p00 >> 16) + (p01 & 0xFFFF) + (p10 & 0xFFFF)
    return p11 + (p01 >> 16) + (p10 >> 16) + (mid >> 16)


def _mul(a, b):
    return _mulhi32(a[1], b[1]) + a[0] * b[1] + a[1] * b[0], a[1] * b[1]


def _xor(a, b):
    return a[0] ^ b[0], a[1] ^ b[1]


def _shr(a, s):
    if s >= 32:
        return jnp.zeros_like(a[0]), a[0] >> (s - 32)
    return a[0] >> s, (a[1] >> s) | (a[0] << (32 - s))


def _mix64(z):
    z = _xor(z, _shr(z, 30))
    z = _mul(z, _const(0xBF58476D1CE4E5B9))
    z = _xor(z, _shr(z, 27))
    z = _mul(z, _const(0x94D049BB133111EB))
    return _xor(z, _shr(z, 31))


def example_keys(base, ids):
    ids = _from_int(ids)
    return _join(_mix64(_add(_from_int(base), _mul(_add(ids, _const(1)), _const(_GOLDEN)))))


def fold_key(keys, value):
    salt = _mix64(_mul(_add(_from_int(value), _const(1)), _const(_LANE)))
    return _join(_mix64(_xor(_split(keys), salt)))


def keyed_uniform(keys, shape):
    size = 1
    for d in shape:
        size *= d
    hi, lo = _split(keys)
    lanes = (jnp.zeros((max(size, 1),), jnp.uint32),
             jnp.arange(1, max(size, 1) + 1, dtype=jnp.uint32))
    z = _mix64(_add((hi[:, None], lo[:, None]), _mul((lanes[0][None], lanes[1][None]),
                                                      _const(_GOLDEN))))
    u = (z[0] >> 8).astype(jnp.float32) * (1.0 / 2 ** 24)
    return jnp.reshape(u, (-1,) + tuple(shape))


# The training step (ATALPModel.train_step / test_step / predict_step). JAX
# calls ``step(state, data)`` and wants ``(outputs, state)`` back: a pure
# function of the variables' values. `stateless_step` runs the model's own
# step code inside a StatelessScope mapping every variable to its value in
# ``state``, so the attack, the loss and the metrics all read the same values,
# and collects what the step assigned. Inside, the functions below replace
# the stateful pieces: each transformed function (value_and_grad, cond) runs
# in its own scope mapping every variable it reads, and returns what it
# assigned as an output, so no traced value escapes its trace.
STATELESS_STEPS = True
# No asserts inside a jitted step: batches are checked on the host instead.
GRAPH_ASSERTS = False


def stateless_step(step, variable_groups, state, data):
    """``(step(data), new_state)`` with the variables of each group read as
    the values of the matching group of ``state``.

    Args:
        step: The model's step, written against variables.
        variable_groups: Lists of Keras variables (trainable, non-trainable,
            optimizer, metrics: the order Keras' JAX trainer uses).
        state: Lists of their values, group by group.
        data: The batch.

    Returns:
        The step's outputs and a tuple of lists: each variable's value after
        the step (assigned, or as it came in).
    """
    mapping = [(variable, value) for variables, values in zip(variable_groups, state)
               for variable, value in zip(variables, values)]
    with keras.StatelessScope(state_mapping=mapping) as scope:
        outputs = step(data)
    return outputs, tuple([scope.get_current_value(v) for v in variables]
                          for variables in variable_groups)


def _assign_changed(variables, old, new):
    """Records in the enclosing scope the values a transformed function
    assigned (those that are not the value it was given)."""
    for variable, before, after in zip(variables, old, new):
        if after is not None and after is not before:
            variable.assign(after)


def grads_at(fn, variables, values, wrt, state=()):
    """``fn()`` with ``variables`` read as ``values``, under ``jax.value_and_grad``.

    Args:
        fn: ``fn() -> outputs`` with ``outputs[-1]`` a scalar.
        variables: Keras variables.
        values: Their values for this call.
        wrt: Positions in ``values`` to differentiate with respect to.
        state: Every other variable ``fn`` reads or assigns (non-trainable
            weights, seed generators, optimizer variables): read at their
            current values (those of the enclosing scope).

    Returns:
        ``(outputs, grads, new_state)``: the gradients of ``outputs[-1]`` with
        respect to ``values[i]`` for ``i`` in ``wrt``, and the value of each
        ``state`` variable after ``fn`` (as it came in when not assigned).
        Nothing is written.
    """
    wrt = list(wrt)
    state = list(state)
    state_values = [v.value for v in state]

    def target(wrt_values):
        current = list(values)
        for i, value in zip(wrt, wrt_values):
            current[i] = value
        mapping = list(zip(variables, current)) + list(zip(state, state_values))
        with keras.StatelessScope(state_mapping=mapping) as scope:
            outputs = fn()
        return outputs[-1], (outputs, [scope.get_current_value(v) for v in state])

    (_, (outputs, new_state)), grads = jax.value_and_grad(target, has_aux=True)(
        [values[i] for i in wrt])
    return outputs, grads, [None if after is before else after
                            for before, after in zip(state_values, new_state)]


def variable_grads(fn, variables, state=()):
    """``(outputs, d outputs[-1] / d variables)`` for ``fn() -> outputs`` at
    the variables' current values; what ``fn`` assigns to ``state`` (every
    other variable it reads, see `grads_at`) is recorded in the enclosing
    scope, as a stateful call would."""
    values = [v.value for v in variables]
    outputs, grads, new_state = grads_at(fn, variables, values, range(len(values)), state)
    _assign_changed(state, [None] * len(state), new_state)
    return outputs, grads


def snapshot(variables):
    """The variables' current values (JAX arrays never change in place)."""
    return [v.value for v in variables]


def apply_gradients(optimizer, grads, variables):
    """``optimizer.stateless_apply`` on the enclosing scope's values, its
    results recorded there. ``variables`` must be in the order the optimizer
    was built with."""
    trainable, optimizer_values = optimizer.stateless_apply(
        [v.value for v in optimizer.variables], grads, [v.value for v in variables])
    for variable, value in zip(list(variables) + list(optimizer.variables),
                               list(trainable) + list(optimizer_values)):
        variable.assign(value)


def cond(pred, true_fn, false_fn, state=()):
    """``jax.lax.cond`` over branches written against variables.

    ``state`` lists every variable the branches read or assign: each branch
    runs in a scope mapping them to their current values and returns what it
    assigned (a seed generator's advance), recorded after the cond.
    """
    state = list(state)
    values = [v.value for v in state]

    def branch(fn):
        def run(current):
            with keras.StatelessScope(state_mapping=list(zip(state, current))) as scope:
                outputs = fn()
            return outputs, [scope.get_current_value(v) for v in state]
        return run

    outputs, new_values = jax.lax.cond(pred, branch(true_fn), branch(false_fn), values)
    _assign_changed(state, values, new_values)
    return outputs


def replicas_in_sync():
    """1: ``tf.distribute`` does not apply to JAX (``ATALPModel.compile``
    refuses a strategy under JAX)."""
    return 1


def global_sum(value):
    return value


def restore_state(variable_groups, state):
    """Puts ``state`` back into the variables after a step refused its batch
    before running. Keras' JAX ``fit`` empties the variables for the epoch
    and would leave them empty; values already donated to a jitted step
    (``steps_per_execution > 1``) cannot be restored and are left alone."""
    pairs = [(variable, value) for variables, values in zip(variable_groups, state)
             for variable, value in zip(variables, values)]
    if any(getattr(value, "is_deleted", lambda: False)() for _, value in pairs):
        return
    for variable, value in pairs:
        variable.assign(value)
