"""The flag-value parsers (atalp_keras.cli) and TrainConfig checks
(atalp_keras.training). The evaluation package's tests are in tests/evaluation/."""

import pytest

from atalp_keras import cli, training


def test_parse_fraction_and_eps():
    assert cli.parse_fraction("8/255") == pytest.approx(8 / 255)
    assert cli.parse_fraction(" 64 / 256 ") == 0.25
    assert cli.parse_fraction("3e-2") == 0.03
    assert cli.parse_eps("0.5") == 0.5
    for bad in ("8/", "abc", "1/0", ""):
        with pytest.raises(ValueError, match="fraction such as 8/255"):
            cli.parse_fraction(bad, "eps")
    with pytest.raises(ValueError, match="did you mean eps=8/255"):
        cli.parse_eps("8")
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        cli.parse_eps("0")


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
