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
