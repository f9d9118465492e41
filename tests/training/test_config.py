"""atalp_keras.training.config: one declaration per setting, its validation."""

import dataclasses

import pytest

from atalp_keras import methods, training
from atalp_keras.errors import UsageError
from atalp_keras.training.config import TrainConfig


def test_train_config_validation_messages():
    good = training.TrainConfig()
    assert good.validate().step_size == pytest.approx(good.eps / 4)
    assert training.TrainConfig(method="trades").validate().num_steps == 10
    cases = [
        (dict(method="madry"), "Unknown method 'madry'"),
        (dict(model="resnet19"), "Unknown model 'resnet19'"),
        (dict(eps=8), "did you mean eps=8/255"),
        (dict(batch_size=0), "batch_size"),
        (dict(lr_schedule="piecewise"), "needs lr_boundaries"),
        (dict(lr_boundaries=(5,)), "applies to lr_schedule='piecewise'"),
        (dict(lr_schedule="piecewise", lr_boundaries=(9, 3)), "increasing"),
        (dict(weights="imagenet"), "resnet50/101/152"),
        (dict(tiny_widths=(4, 8)), "tiny_widths"),
        (dict(devices=("/gpu:0",)), "devices"),
        (dict(momentum=1.0), "momentum"),
        (dict(image_size=(0, 3)), "image_size"),
    ]
    for kwargs, message in cases:
        with pytest.raises(training.ConfigError, match=message):
            training.TrainConfig(**kwargs).validate()


def test_every_setting_but_the_flagfile_has_help():
    fields = dataclasses.fields(TrainConfig)
    undocumented = [f.name for f in fields if "help" not in f.metadata]
    assert undocumented == ["flags_text"]


@pytest.mark.parametrize("kwargs, message", [
    (dict(augment="rotate"), "Unknown augment 'rotate'"),
    (dict(verbose=3), r"`verbose` must be an integer in \[0, 2\]"),
    (dict(learning_rate=0.0), r"`learning_rate` must be a number in \(0.0, inf\]"),
    (dict(lr_decay=0.0), "lr_decay"),
    (dict(alp_weight=-1.0), "alp_weight"),
    (dict(num_steps=0), "num_steps"),
    (dict(seed=True), "seed"),
    (dict(export_name="a/b"), "plain folder name"),
    (dict(model_dir=""), "model_dir"),
    (dict(step_size=2.0), "step_size"),
])
def test_bounds_and_choices_come_from_the_field_metadata(kwargs, message):
    with pytest.raises(UsageError, match=message):
        TrainConfig(**kwargs).validate()


def test_validate_normalises_and_takes_preset_defaults_from_methods():
    config = TrainConfig(image_size=16, eps="8/255", tiny_widths=[4, 4, 8, 8],
                         devices=["/cpu:0"], distribution="mirrored").validate()
    assert config.image_size == (16, 16)
    assert config.eps == pytest.approx(8 / 255)
    assert config.tiny_widths == (4, 4, 8, 8) and config.devices == ("/cpu:0",)
    for name, method in methods.METHODS.items():
        assert TrainConfig(method=name).validate().num_steps == method.num_steps
    assert TrainConfig(num_steps=3, method="trades").validate().num_steps == 3
    assert TrainConfig().eval_pgd_steps == methods.EVAL_PGD_STEPS
    assert TrainConfig().validate() == TrainConfig().validate().validate()


def test_model_names_come_from_the_backbone_registry():
    from atalp_keras import backbones

    assert "tiny" in training.MODEL_NAMES and "resnet18" in training.MODEL_NAMES
    for name in training.MODEL_NAMES:
        assert TrainConfig(model=name).validate().model == name
    registry = getattr(backbones, "names", None)
    if registry is not None:
        assert tuple(registry()) == training.MODEL_NAMES
