"""PGD of a few steps is unrolled in graphs traced for XLA (a tf.while_loop of
the same steps cost 3x under XLA on CPU, issue 11 item 2) and looped otherwise
(same speed, one traced step instead of num_steps), with the same values."""

import keras
import numpy as np
import tensorflow as tf

import atalp_keras as ak
from atalp_keras.attacks import pgd
from atalp_keras.attacks.primitives import tracing_for_xla, xla_tracing


def _loops(fn, *args):
    graph = tf.function(fn).get_concrete_function(*args).graph
    return [op.type for op in graph.get_operations() if "While" in op.type]


def _problem():
    keras.utils.set_random_seed(0)
    model = ak.tiny_resnet((8, 8, 1), 10, widths=(4, 4, 4, 4))
    x = tf.constant(np.random.default_rng(0).uniform(size=(4, 8, 8, 1)), tf.float32)
    return model, x, tf.constant([0, 1, 2, 3])


def _under_xla(fn):
    def traced(*args):
        with xla_tracing(True):
            return fn(*args)
    return traced


def test_short_attacks_unrolled_only_for_xla_long_and_tensor_counts_looped():
    model, x, y = _problem()
    attack = ak.PGDAttack(0.2, 0.05, 3, random_start=False)
    run = lambda a, b: attack(model, a, b)  # noqa: E731
    assert _loops(_under_xla(run), x, y) == []
    assert _loops(run, x, y)  # Without XLA: one loop, whatever the step count.
    assert not tracing_for_xla()  # The context does not leak.
    longer = ak.PGDAttack(0.2, 0.05, pgd.UNROLL_MAX_STEPS + 1, random_start=False)
    assert _loops(_under_xla(lambda a, b: longer(model, a, b)), x, y)
    with xla_tracing(True):
        unrolled = attack.iterate(model, x, x, y, 3)
    looped = tf.function(lambda a: attack.iterate(model, a, a, y, tf.constant(3)))(x)
    assert _loops(_under_xla(lambda a: attack.iterate(model, a, a, y, tf.constant(3))), x)
    np.testing.assert_allclose(unrolled.numpy(), looped.numpy(), atol=1e-6)


def test_train_step_and_perturb_unroll_exactly_when_xla_compiled():
    model, x, y = _problem()
    for jit in (False, True):
        trainer = ak.ATALPModel(model)
        trainer.compile(keras.optimizers.SGD(0.01), method="pat",
                        attack=ak.PGDAttack(0.2, 0.05, 3, seed=0), eval_attack=None,
                        jit_compile=jit)
        assert bool(_loops(lambda a, b: trainer.train_step((a, b)), x, y)) is not jit
        attack = ak.PGDAttack(0.2, 0.05, 3, random_start=False)
        attack.perturb(model, x.numpy(), y.numpy(), jit_compile=jit)
        (compiled,) = attack._compiled.values()
        graph = compiled.get_concrete_function().graph
        assert any("While" in op.type for op in graph.get_operations()) is not jit
