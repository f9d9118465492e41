"""The counting wrapper counts every compiled call, not every trace."""

import keras
import numpy as np

from atalp_keras.attacks import PGDAttack
from atalp_keras.attacks.base import PROBE_SIZE
from speedlib.counting import CountingModel


def small_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(10)(x))


def test_pgd_costs_one_forward_and_one_input_gradient_per_step():
    model = small_model()
    counted = CountingModel(model)
    x = np.random.default_rng(0).random((10, 8, 8, 1), dtype=np.float32)
    y = np.arange(10) % 10
    attack = PGDAttack(0.1, step_size=0.02, num_steps=3, seed=0)
    # 3 steps x 10 images, plus the entry check's one forward of a probe
    # batch (logits, not probabilities: attacks/base.check_attack_inputs).
    expected = {"forward_images": 30 + min(PROBE_SIZE, len(x)), "gradient_images": 30}
    attack.perturb(counted, x, y, batch_size=4)
    assert counted.counts() == expected
    counted.reset()
    attack.perturb(counted, x, y, batch_size=4)        # traced already: still counted
    assert counted.counts() == expected


def test_plain_forward_counts_no_gradient():
    model = small_model()
    counted = CountingModel(model)
    logits = counted(np.zeros((5, 8, 8, 1), np.float32))
    assert tuple(logits.shape) == (5, 10)
    assert counted.counts() == {"forward_images": 5, "gradient_images": 0}
    assert counted.count_params() == model.count_params()
    assert isinstance(counted.classifier, keras.Model)
