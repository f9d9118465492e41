"""atalp_keras.training.optim: schedules, optimisers, coupled weight decay."""

import keras
import numpy as np
import pytest

import atalp_keras as ak
from atalp_keras.training import TrainConfig, add_weight_decay, optim


def rates(config, steps_per_epoch, steps):
    schedule = optim.learning_rate(config.validate(), steps_per_epoch)
    return [float(keras.ops.convert_to_numpy(schedule(s))) for s in steps]


def test_piecewise_decays_on_the_first_step_of_each_boundary_epoch():
    config = TrainConfig(lr_schedule="piecewise", lr_boundaries=(2, 3),
                         learning_rate=0.1, lr_decay=0.5, epochs=4)
    # Step s is the (s+1)-th update; epoch 2 starts at update 2*5+1.
    got = rates(config, 5, [0, 9, 10, 14, 15])
    np.testing.assert_allclose(got, [0.1, 0.1, 0.05, 0.05, 0.025], rtol=1e-6)


def test_cosine_reaches_zero_at_the_last_step_and_constant_is_a_float():
    config = TrainConfig(lr_schedule="cosine", learning_rate=0.2, epochs=2)
    first, middle, last = rates(config, 3, [0, 3, 6])
    assert first == pytest.approx(0.2) and middle == pytest.approx(0.1)
    assert last == pytest.approx(0.0, abs=1e-7)
    assert optim.learning_rate(TrainConfig(learning_rate=0.3), 7) == 0.3


def test_make_optimizer_follows_the_config():
    sgd = optim.make_optimizer(TrainConfig(momentum=0.8, nesterov=True), 0.1)
    assert isinstance(sgd, keras.optimizers.SGD)
    assert (sgd.momentum, sgd.nesterov) == (0.8, True)
    adam = optim.make_optimizer(TrainConfig(optimizer="adam"), 0.01)
    assert isinstance(adam, keras.optimizers.Adam)
    scaled = optim.make_optimizer(TrainConfig(mixed_precision="mixed_float16"), 0.1)
    assert isinstance(scaled, keras.optimizers.LossScaleOptimizer)
    assert optim.last_step_rate(0.25, sgd) == 0.25


def test_weight_decay_adds_wd_times_w_to_every_kernel_gradient():
    classifier = ak.tiny_resnet((8, 8, 1), 3, widths=(2, 2, 2, 2))
    kernels = [v for v in classifier.trainable_variables if "kernel" in v.path]
    count = add_weight_decay(classifier, 1e-2)
    assert count == len(kernels) > 0
    # The penalty is wd/2 * sum ||W||^2 (its gradient wd * W), on kernels only.
    expected = 0.5e-2 * sum(float(np.sum(np.square(v.numpy()))) for v in kernels)
    classifier(np.zeros((1, 8, 8, 1), "float32"))
    assert float(sum(classifier.losses)) == pytest.approx(expected, rel=1e-5)
    assert add_weight_decay(classifier, 0.0) == count
    classifier(np.zeros((1, 8, 8, 1), "float32"))
    assert not classifier.losses
