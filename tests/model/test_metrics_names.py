"""``model.metrics_names`` labels what ``evaluate`` / ``test_on_batch``
return with ``return_dict=False``, value for value, as in Keras (issue 24,
bug 2: seven names for five values labelled accuracy as ``alp``)."""

import keras
import numpy as np
import pytest

import atalp_keras as ak


def _net():
    """Small and quick to trace, with two stages for the attention term."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    a = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv2_block1_out")(inputs)
    b = keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu",
                            name="conv3_block1_out")(a)
    outputs = keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(b))
    return keras.Model(inputs, outputs)


def _model(method, **compile_kwargs):
    model = ak.ATALPModel(_net())
    attack = ak.TRADESAttack(0.2, 0.1, 1, random_start=False) if method == "trades" else \
        "auto" if method == "standard" else ak.PGDAttack(0.2, 0.1, 1, random_start=False)
    eval_attack = None if method == "standard" else ak.PGDAttack(0.2, 0.1, 1, random_start=False)
    model.compile("adam", method=method, attack=attack, eval_attack=eval_attack,
                  **compile_kwargs)
    return model


@pytest.mark.parametrize("method, kwargs", [
    ("at_alp", {}), ("trades", {}), ("standard", {}), ("pat", {"clean_metrics": False})])
def test_evaluate_values_line_up_with_metrics_names(method, kwargs, digits):
    x, y = digits[2][:32], digits[3][:32]
    model = _model(method, **kwargs)
    logs = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    values = model.evaluate(x, y, batch_size=16, verbose=0)
    assert len(model.metrics_names) == len(values)
    assert dict(zip(model.metrics_names, values)) == pytest.approx(logs)
    # test_on_batch is labelled by the same names (attacks without a random start,
    # so two calls give the same values).
    one = model.test_on_batch(x[:16], y[:16])
    one_logs = model.test_on_batch(x[:16], y[:16], return_dict=True)
    assert dict(zip(model.metrics_names, one)) == pytest.approx(one_logs)


def test_metrics_names_name_the_evaluation_logs_of_at_alp(digits):
    model = _model("at_alp")
    assert model.metrics_names == ["loss", "ce_natural", "ce_adv", "accuracy", "adv_accuracy"]
    x, y = digits[2][:16], digits[3][:16]
    values = dict(zip(model.metrics_names, model.evaluate(x, y, verbose=0)))
    # The value labelled accuracy is the clean accuracy of the predictions.
    predicted = np.argmax(model.predict(x, verbose=0), -1)
    assert values["accuracy"] == pytest.approx(np.mean(predicted == y))


def test_metrics_names_is_empty_before_compile():
    assert ak.ATALPModel(_net()).metrics_names == []
