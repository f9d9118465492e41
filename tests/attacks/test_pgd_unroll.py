"""PGD of a few steps is unrolled in train_step/test_step and XLA-compiled
perturb calls (traced once per fit; under XLA on CPU a tf.while_loop of the same
steps cost 3x, issue 11 item 2) and looped in other perturb calls (one traced
step instead of num_steps), with the same values."""

import keras
import numpy as np
import tensorflow as tf

import atalp_keras as ak
from atalp_keras.attacks import pgd
from atalp_keras.attacks.primitives import unrolling_steps, unrolled_steps


def _loops(fn, *args):
    graph = tf.function(fn).get_concrete_function(*args).graph
    return [op.type for op in graph.get_operations() if "While" in op.type]


def _problem():
    keras.utils.set_random_seed(0)
    model = ak.tiny_resnet((8, 8, 1), 10, widths=(4, 4, 4, 4))
    x = tf.constant(np.random.default_rng(0).uniform(size=(4, 8, 8, 1)), tf.float32)
    return model, x, tf.constant([0, 1, 2, 3])


def _unrolled(fn):
    def traced(*args):
        with unrolled_steps(True):
            return fn(*args)
    return traced


def test_short_attacks_unrolled_only_where_asked_long_and_tensor_counts_looped():
    model, x, y = _problem()
    attack = ak.PGDAttack(0.2, 0.05, 3, random_start=False)
    run = lambda a, b: attack(model, a, b)  # noqa: E731
    assert _loops(_unrolled(run), x, y) == []
    assert _loops(run, x, y)  # Not asked: one loop, whatever the step count.
    assert not unrolling_steps()  # The context does not leak.
    longer = ak.PGDAttack(0.2, 0.05, pgd.UNROLL_MAX_STEPS + 1, random_start=False)
    assert _loops(_unrolled(lambda a, b: longer(model, a, b)), x, y)
    with unrolled_steps(True):
        unrolled = attack.iterate(model, x, x, y, 3)
    looped = tf.function(lambda a: attack.iterate(model, a, a, y, tf.constant(3)))(x)
    assert _loops(_unrolled(lambda a: attack.iterate(model, a, a, y, tf.constant(3))), x)
    np.testing.assert_allclose(unrolled.numpy(), looped.numpy(), atol=1e-6)


def test_steps_always_unroll_and_perturb_only_when_xla_compiled():
    model, x, y = _problem()
    for jit in (False, True):
        trainer = ak.ATALPModel(model)
        trainer.compile(keras.optimizers.SGD(0.01), method="pat",
                        attack=ak.PGDAttack(0.2, 0.05, 3, seed=0),
                        eval_attack=ak.PGDAttack(0.2, 0.05, 3, seed=1), jit_compile=jit)
        assert _loops(lambda a, b: trainer.train_step((a, b)), x, y) == []
        assert _loops(lambda a, b: trainer.test_step((a, b)), x, y) == []
        attack = ak.PGDAttack(0.2, 0.05, 3, random_start=False)
        attack.perturb(model, x.numpy(), y.numpy(), jit_compile=jit)
        (compiled,) = attack._compiled.values()
        graph = compiled.get_concrete_function().graph
        assert any("While" in op.type for op in graph.get_operations()) is not jit


def test_the_public_context_unrolls_an_attack_in_user_code():
    # ak.unrolled_steps is the same context (what README tells XLA users).
    model, x, y = _problem()
    attack = ak.PGDAttack(0.2, 0.05, 3, random_start=False)

    def user_code(a, b):
        with ak.unrolled_steps(True):
            return attack(model, a, b)
    assert ak.unrolled_steps is unrolled_steps
    assert _loops(user_code, x, y) == []
