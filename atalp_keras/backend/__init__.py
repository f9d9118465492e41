"""The backend seam: everything the attacks need that Keras 3 does not offer
backend-neutrally, one module per Keras backend.

Released Keras has no ``ops.grad``, no loop with TensorFlow's
``parallel_iterations`` and no way to compile a function over a model's
current weights that works the same on every backend. The attacks use
``keras.ops`` for their math and this module for the rest:

- `value_and_grad(fn, x)`: ``fn(x) -> (target, aux)``; returns
  ``(target, aux, d target / d x)``, with zeros where ``x`` has no gradient
  path (a masked gradient is not an error: the audit reports it).
- `while_loop(cond, body, loop_vars)`: ``body(*loop_vars) -> loop_vars``,
  sequential iterations, inside a compiled function or eagerly.
- `stop_gradient(x)`.
- `compiled(fn, signature, jit_compile=False, stateful=None)`: ``fn`` compiled
  once per input shape (TensorFlow: a ``tf.function`` with that input
  signature; JAX: ``jax.jit`` over the current values of the variables of
  ``stateful()``, so a compiled attack always reads the model's current
  weights and advances its seed generators).
- `executing_eagerly(*tensors)`: False while a compiled function is traced.
- `init_scope()`: builds Python-side objects (the folded attack view) outside
  any trace; `do_not_convert(fn)`: keeps TensorFlow's AutoGraph off ``fn``.
- Per-example keyed random numbers (``attacks/keys.py``): `example_keys`,
  `fold_key`, `keyed_uniform` and `KEY_SHAPE` / `KEY_DTYPE`, the host-side
  form of one key (TensorFlow: one uint64; JAX, whose default has no 64-bit
  integers: a ``(hi, lo)`` pair of uint32). Both give the same numbers.

For ``ATALPModel``'s train/test/predict steps (TensorFlow's are stateful,
JAX's are pure functions of the variables' values):

- `STATELESS_STEPS`: whether Keras calls ``step(state, data)`` (JAX) rather
  than ``step(data)``; then `stateless_step(step, variable_groups, state,
  data)` runs the model's step code with the variables read from ``state``.
- `GRAPH_ASSERTS`: whether input value checks can be asserts inside the step
  (TensorFlow); otherwise batches are checked on the host.
- `variable_grads(fn, variables, state)` and `grads_at(fn, variables,
  values, wrt, state)`: gradients of a training pass with respect to the
  weights (a GradientTape; ``jax.value_and_grad``); ``state`` lists the other
  variables the pass reads or assigns.
- `snapshot(variables)`, `apply_gradients(optimizer, grads, variables)`
  (``optimizer.apply``; ``optimizer.stateless_apply``),
  `cond(pred, true_fn, false_fn, state)` (``tf.cond``; ``jax.lax.cond``).
- `restore_state(variable_groups, state)`: puts a JAX step's input state
  back into the variables when the step refused its batch.
- `replicas_in_sync()` and `global_sum(value)`: ``tf.distribute``'s replica
  count and cross-replica sum (1 and the identity on JAX).

The implementations are ``tensorflow.py`` and ``jax.py``; which one is
chosen by ``keras.backend.backend()`` when this module is first imported.
"""

import keras

from atalp_keras.errors import UsageError

BACKENDS = ("tensorflow", "jax")

NAME = keras.backend.backend()
if NAME == "tensorflow":
    from atalp_keras.backend import tensorflow as _impl
elif NAME == "jax":
    from atalp_keras.backend import jax as _impl
else:
    raise UsageError(
        f"atalp_keras runs on the Keras backends {', '.join(BACKENDS)}. "
        f"Received: KERAS_BACKEND={NAME!r}")

value_and_grad = _impl.value_and_grad
while_loop = _impl.while_loop
stop_gradient = _impl.stop_gradient
compiled = _impl.compiled
executing_eagerly = _impl.executing_eagerly
init_scope = _impl.init_scope
do_not_convert = _impl.do_not_convert
example_keys = _impl.example_keys
fold_key = _impl.fold_key
keyed_uniform = _impl.keyed_uniform
KEY_SHAPE = _impl.KEY_SHAPE
KEY_DTYPE = _impl.KEY_DTYPE
STATELESS_STEPS = _impl.STATELESS_STEPS
GRAPH_ASSERTS = _impl.GRAPH_ASSERTS
variable_grads = _impl.variable_grads
grads_at = _impl.grads_at
snapshot = _impl.snapshot
apply_gradients = _impl.apply_gradients
cond = _impl.cond
replicas_in_sync = _impl.replicas_in_sync
global_sum = _impl.global_sum
restore_state = _impl.restore_state
# JAX only (called when STATELESS_STEPS).
stateless_step = getattr(_impl, "stateless_step", None)

__all__ = ["BACKENDS", "GRAPH_ASSERTS", "KEY_DTYPE", "KEY_SHAPE", "NAME", "STATELESS_STEPS",
           "apply_gradients", "compiled", "cond", "do_not_convert", "example_keys",
           "executing_eagerly", "fold_key", "global_sum", "grads_at", "init_scope",
           "keyed_uniform", "replicas_in_sync", "restore_state", "snapshot", "stateless_step",
           "stop_gradient", "value_and_grad", "variable_grads", "while_loop"]
