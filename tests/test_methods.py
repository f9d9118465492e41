"""atalp_keras.methods owns the preset defaults; compile("auto") uses them."""

import keras
import pytest

import atalp_keras as ak
from atalp_keras import methods
from atalp_keras.errors import UsageError


def test_default_attack_steps_are_the_presets():
    trades = methods.default_attack("trades", eps=0.1)
    assert (type(trades).__name__, trades.num_steps) == ("TRADESAttack", 10)
    assert trades.step_size == pytest.approx(0.025)
    assert methods.default_attack("at_alp", eps=0.1).num_steps == 7
    assert methods.default_attack("trades", num_steps=2).num_steps == 2
    fast = methods.default_attack("fast", eps=0.2)
    assert fast.step_size == pytest.approx(0.25) and fast.random_start
    assert methods.default_attack("standard") is None


def test_compile_auto_trades_attack_takes_10_steps():
    """The docs say PGD-10 for TRADES; compile(attack="auto") gave 7 before."""
    classifier = ak.tiny_resnet((8, 8, 1), 10, widths=(2, 2, 2, 2))
    model = ak.ATALPModel(classifier)
    model.compile(keras.optimizers.SGD(0.01), method="trades", attack="auto")
    assert model.train_attack.num_steps == 10


def test_unknown_method_is_a_usage_error():
    with pytest.raises(UsageError, match="Unknown method 'madry'"):
        methods.get_method("madry")
