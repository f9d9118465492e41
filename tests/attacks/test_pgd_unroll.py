"""PGD of a few steps is unrolled in the graph (a tf.while_loop of the same
steps cost 3x under XLA on CPU, issue 11 item 2), with the values of the loop."""

import keras
import numpy as np
import tensorflow as tf

import atalp_keras as ak
from atalp_keras.attacks import pgd


def _loops(fn, *args):
    graph = tf.function(fn).get_concrete_function(*args).graph
    return [op.type for op in graph.get_operations() if "While" in op.type]


def test_short_attacks_unrolled_long_and_tensor_counts_looped():
    keras.utils.set_random_seed(0)
    model = ak.tiny_resnet((8, 8, 1), 10, widths=(4, 4, 4, 4))
    x = tf.constant(np.random.default_rng(0).uniform(size=(4, 8, 8, 1)), tf.float32)
    y = tf.constant([0, 1, 2, 3])
    attack = ak.PGDAttack(0.2, 0.05, 3, random_start=False)
    assert _loops(lambda a, b: attack(model, a, b), x, y) == []
    longer = ak.PGDAttack(0.2, 0.05, pgd.UNROLL_MAX_STEPS + 1, random_start=False)
    assert _loops(lambda a, b: longer(model, a, b), x, y)
    unrolled = attack.iterate(model, x, x, y, 3)
    looped = tf.function(lambda a: attack.iterate(model, a, a, y, tf.constant(3)))(x)
    assert _loops(lambda a: attack.iterate(model, a, a, y, tf.constant(3)), x)
    np.testing.assert_allclose(unrolled.numpy(), looped.numpy(), atol=1e-6)
