"""A new user's own `keras.applications` model under ATALPModel (issue 24, item 4).

Each model takes one `fit` step of a paired method with one PGD step on
random 32x32 images (the smallest input these networks accept): the logs are
finite, the attention term pairs the named stages, and the weights move.
"""

import keras
import numpy as np
import pytest

import atalp_keras as ak
from atalp_keras.errors import UsageError

RESNET_STAGES = ["conv2_block3_out", "conv3_block4_out", "conv4_block6_out", "conv5_block3_out"]


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    return rng.random((2, 32, 32, 3), dtype=np.float32), np.array([3, 7], np.int32)


def _one_step(model, batch, method="at_alp"):
    """Compiles, takes one training step, returns its logs and whether weights moved."""
    model.compile(keras.optimizers.SGD(0.01), method=method,
                  attack=ak.PGDAttack(8 / 255, 2 / 255, 1, seed=0), eval_attack=None)
    before = [v.numpy().copy() for v in model.classifier.trainable_variables]
    history = model.fit(*batch, batch_size=2, epochs=1, verbose=0).history
    logs = {key: values[-1] for key, values in history.items()}
    moved = sum(not np.array_equal(a, v.numpy())
                for a, v in zip(before, model.classifier.trainable_variables))
    return logs, moved / len(before)


def test_keras_applications_resnet50_with_named_stages_takes_an_at_alp_step(batch):
    keras.utils.set_random_seed(0)
    classifier = keras.applications.ResNet50(weights=None, input_shape=(32, 32, 3), classes=10,
                                              classifier_activation=None)
    model = ak.ATALPModel(classifier, stage_layers=["conv3_block4_out", "conv5_block3_out"])
    assert model.stage_layers == ["conv3_block4_out", "conv5_block3_out"]
    # The feature model returns the logits and exactly those two stage maps.
    outputs = model.feature_model(batch[0])
    assert [tuple(o.shape) for o in outputs["stages"]] == [(2, 4, 4, 512), (2, 1, 1, 2048)]
    logs, moved = _one_step(model, batch)
    assert set(logs) == {"loss", "ce_natural", "ce_adv", "alp", "at", "accuracy", "adv_accuracy"}
    assert all(np.isfinite(v) for v in logs.values())
    assert logs["at"] > 0  # The stage maps of x and x_adv were paired.
    assert moved > 0.9, moved


def test_the_package_resnet50_wrapper_finds_its_stages_and_trains(batch):
    keras.utils.set_random_seed(0)
    model = ak.ATALPModel(ak.application_resnet(50, (32, 32, 3), 10))
    assert model.stage_layers == RESNET_STAGES
    logs, moved = _one_step(model, batch)
    assert all(np.isfinite(v) for v in logs.values()) and logs["at"] > 0
    assert moved > 0.9, moved


def test_mobilenet_v2_needs_named_stages_then_trains(batch):
    keras.utils.set_random_seed(0)
    classifier = keras.applications.MobileNetV2(
        alpha=0.35, weights=None, input_shape=(32, 32, 3), classes=10,
        classifier_activation=None)
    # No ResNet stage names: the attention methods refuse, saying what to pass.
    with pytest.raises(UsageError, match="stage_layers"):
        ak.ATALPModel(classifier).compile("sgd", method="at_alp")
    model = ak.ATALPModel(classifier, stage_layers=["block_2_add", "block_5_add", "out_relu"])
    logs, moved = _one_step(model, batch)
    assert all(np.isfinite(v) for v in logs.values()) and logs["at"] > 0
    assert moved > 0.9, moved
