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
