"""The backbone registry: names, options, stage maps of the 28x28 ResNet."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest  # noqa: E402

from atalp_keras import backbones  # noqa: E402


def _stage_sizes(model):
    return [tuple(model.get_layer(name).output.shape[1:3])
            for name in backbones.stage_layer_names(model)]


def test_registry_lists_every_builtin_architecture():
    assert {"tiny", "tiny_deep", "fmnist", "fmnist_deep", "cnn", "resnet18", "resnet34",
            "resnet50", "resnet101", "resnet152"} <= set(backbones.names())
    assert set(backbones.describe()) == set(backbones.names())


def test_fmnist_backbone_keeps_four_stage_maps_worth_pairing():
    model = backbones.build_backbone("fmnist", (28, 28, 1), 10)
    assert _stage_sizes(model) == [(28, 28), (14, 14), (7, 7), (4, 4)]
    assert model.output.shape[-1] == 10


def test_deep_variants_have_two_blocks_per_stage_and_the_same_maps():
    shallow = backbones.build_backbone("fmnist", (28, 28, 1), 10)
    deep = backbones.build_backbone("fmnist_deep", (28, 28, 1), 10)
    assert _stage_sizes(deep) == _stage_sizes(shallow)
    assert backbones.stage_layer_names(deep)[0] == "conv2_block2_out"
    tiny_deep = backbones.build_backbone("tiny_deep", (8, 8, 1), 10, widths=(4, 8, 8, 16))
    assert backbones.stage_layer_names(tiny_deep)[-1] == "conv5_block2_out"


def test_an_option_the_architecture_does_not_take_is_refused():
    assert "widths" not in backbones.backbone_options("resnet18")
    with pytest.raises(ValueError, match=r"'resnet18' does not take the option\(s\) widths"):
        backbones.build_backbone("resnet18", (32, 32, 3), 10, widths=(8, 8, 8, 8))


def test_unknown_name_lists_the_registered_ones():
    with pytest.raises(ValueError, match="Unknown model 'resnet7'.*fmnist"):
        backbones.build_backbone("resnet7", (28, 28, 1), 10)


@pytest.mark.parametrize("name, method", [("fmnist", "at_alp"), ("fmnist_deep", "pat")])
def test_fmnist_backbones_train_and_are_attacked(name, method):
    """The reproduction's architectures in use: ``fmnist`` under AT+ALP
    (attention pairing on all four 28x28..4x4 stage maps), ``fmnist_deep``
    (the black-box source) under PGD training; then each under PGD."""
    import keras
    import numpy as np

    import atalp_keras as ak

    keras.utils.set_random_seed(0)
    classifier = backbones.build_backbone(name, (28, 28, 1), 10)
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(16, 28, 28, 1)).astype("float32")
    y = (np.arange(16) % 10).astype("int32")
    model = ak.ATALPModel(classifier)
    assert model.stage_layers == backbones.stage_layer_names(classifier)
    model.compile(keras.optimizers.SGD(0.01), method=method,
                  attack=ak.PGDAttack(0.1, step_size=0.05, num_steps=1), eval_attack=None)
    before = [w.copy() for w in classifier.get_weights()]
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][-1]) and history["ce_adv"][-1] > 0
    if method == "at_alp":
        assert history["at"][-1] > 0 and history["alp"][-1] > 0
    assert all(np.any(a != b) for a, b in zip(before, classifier.get_weights())
               if a.ndim == 4)  # every convolution kernel took the step

    # Under attack: PGD-2 stays in the eps-ball and raises the loss.
    x_adv = ak.PGDAttack(0.1, step_size=0.05, num_steps=2, random_start=False).perturb(
        classifier, x, y, batch_size=16)
    assert np.max(np.abs(x_adv - x)) <= 0.1 + 1e-6

    def loss(images):
        return float(keras.losses.sparse_categorical_crossentropy(
            y, classifier(images, training=False), from_logits=True).numpy().mean())
    assert loss(x_adv) > loss(x)
