"""Evaluation batches may mark the examples the eval attack scores
(``ATTACK_MASK``): clean metrics cover every example, adversarial ones the
marked examples only, and a batch with none marked skips the attack (issue
11, item 4: per-epoch validation on a fixed subset)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import atalp_keras as ak
from atalp_keras.errors import UsageError
from atalp_keras.model import ATTACK_MASK


class CountingPGD(ak.PGDAttack):
    """PGD that counts the batches it really attacks (in the graph)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = tf.Variable(0, trainable=False)

    def __call__(self, model, x, y):
        self.calls.assign_add(1)
        return super().__call__(model, x, y)


def _model(attack):
    keras.utils.set_random_seed(0)
    model = ak.ATALPModel(ak.tiny_resnet((8, 8, 1), 10, widths=(4, 4, 4, 4)))
    model.compile("sgd", method="pat", attack=ak.PGDAttack(0.2, 0.05, 1),
                  eval_attack=attack)
    return model


def _data(n=24):
    rng = np.random.default_rng(0)
    return (rng.uniform(size=(n, 8, 8, 1)).astype("float32"),
            rng.integers(0, 10, n).astype("int32"))


def _masked(x, y, marked, batch=8):
    mask = np.zeros(len(y), "float32")
    mask[:marked] = 1.0
    return tf.data.Dataset.from_tensor_slices((x, y, {ATTACK_MASK: mask})).batch(batch)


def test_clean_metrics_cover_all_adversarial_only_the_marked():
    x, y = _data()
    attack = CountingPGD(0.2, 0.05, 2, random_start=False)
    model = _model(attack)
    everything = model.evaluate(x, y, batch_size=8, return_dict=True, verbose=0)
    marked = model.evaluate(x[:8], y[:8], batch_size=8, return_dict=True, verbose=0)
    attack.calls.assign(0)
    logs = model.evaluate(_masked(x, y, 8), return_dict=True, verbose=0)
    assert int(attack.calls.numpy()) == 1  # Two of the three batches skipped it.
    assert logs["accuracy"] == pytest.approx(everything["accuracy"])
    assert logs["ce_natural"] == pytest.approx(everything["ce_natural"], rel=1e-5)
    for key in ("adv_accuracy", "ce_adv", "loss"):
        assert logs[key] == pytest.approx(marked[key], rel=1e-5), key


def test_mask_combines_with_sample_weight():
    x, y = _data(8)
    model = _model(ak.PGDAttack(0.2, 0.05, 2, random_start=False))
    weight = np.arange(1, 9, dtype="float32")
    mask = np.array([1, 1, 1, 0, 0, 1, 0, 0], "float32")
    masked = tf.data.Dataset.from_tensor_slices(
        (x, y, {ATTACK_MASK: mask, "sample_weight": weight})).batch(8)
    logs = model.evaluate(masked, return_dict=True, verbose=0)
    plain = model.evaluate(x, y, sample_weight=weight * mask, batch_size=8,
                           return_dict=True, verbose=0)
    clean = model.evaluate(x, y, sample_weight=weight, batch_size=8, return_dict=True,
                           verbose=0)
    assert logs["ce_adv"] == pytest.approx(plain["ce_adv"], rel=1e-5)
    assert logs["ce_natural"] == pytest.approx(clean["ce_natural"], rel=1e-5)


def test_training_batches_refuse_a_mask():
    x, y = _data(8)
    model = _model(None)
    with pytest.raises(UsageError, match=ATTACK_MASK):
        model.fit(_masked(x, y, 4), epochs=1, verbose=0)
