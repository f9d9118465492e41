"""MAC counter against hand-computed counts; passes per image per preset."""

import keras
import pytest

from speedlib import costmodel


def tiny_model():
    # Every count below is worked out by hand from the layer shapes.
    inputs = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(4, 3)(inputs)                        # 4x4x4: 16 * (3*3*2*4) = 1152
    x = keras.layers.Conv2D(3, 1, strides=2, padding="same")(x)  # 2x2x3: 4 * (1*1*4*3) = 48
    x = keras.layers.BatchNormalization()(x)                     # not counted
    x = keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2)(x)  # 4 * 54 = 216
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(5)(x)                           # 6 * 5 = 30
    return keras.Model(inputs, outputs)


def test_count_macs_matches_hand_count():
    counted = costmodel.count_macs(tiny_model())
    assert sorted(counted["layers"].values()) == [30, 48, 216, 1152]
    assert counted["total"] == 1446


def test_nested_model_is_counted_through():
    inner = tiny_model()
    inputs = keras.Input((6, 6, 2))
    outer = keras.Model(inputs, keras.layers.Dense(2)(inner(inputs)))   # + 5 * 2
    assert costmodel.count_macs(outer)["total"] == 1446 + 10


def test_dense_on_a_sequence_counts_every_position():
    inputs = keras.Input((3, 4))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    assert costmodel.count_macs(model)["total"] == 3 * 4 * 2


def test_training_passes_per_preset():
    k = 7
    expected = {  # (attack passes, extra forwards, training passes)
        "standard": (0, 0, 1), "pat": (k, 1, 1), "alp": (k, 0, 2), "at": (k, 0, 2),
        "at_alp": (k, 0, 2), "trades": (k, 1, 2), "fast": (1, 1, 1), "reference": (k, 0, 1)}
    for method, (grad, forward, train) in expected.items():
        p = costmodel.training_passes(method, k)
        assert (p["input_grad"], p["forward"], p["train"]) == (grad, forward, train), method
        assert p["forward_equivalents"] == 2 * grad + forward + 3 * train
    assert costmodel.training_passes("pat", k, clean_metric_forward=False)["forward"] == 0


def test_predicted_batch_seconds_uses_the_2b_pass_for_paired_presets():
    units = {"t_grad": 2.0, "t_forward": 1.0, "t_train": 3.0, "t_train2": 5.0,
             "t_grad_xla": 20.0, "t_forward_xla": 10.0, "t_train_xla": 30.0,
             "t_train2_xla": 50.0}
    pat = costmodel.training_passes("pat", 3)
    at_alp = costmodel.training_passes("at_alp", 3)
    assert costmodel.predicted_batch_seconds(pat, units) == 3 * 2.0 + 1.0 + 3.0
    assert costmodel.predicted_batch_seconds(at_alp, units) == 3 * 2.0 + 5.0
    assert costmodel.predicted_batch_seconds(at_alp, units, xla_attack=True) == 3 * 20.0 + 5.0
    assert costmodel.predicted_batch_seconds(at_alp, units, True, True) == 3 * 20.0 + 50.0


def test_epoch_seconds_on_paper():
    passes = costmodel.training_passes("standard", 7)       # 3 forwards per image
    # 1e6 MACs -> 2e6 FLOPs per forward; 1000 images -> 6e9 FLOPs; 1 TFLOP/s at 50%.
    one = costmodel.epoch_seconds_on_paper(1e6, passes, 1000, peak_tflops=1.0, utilisation=0.5)
    assert one == pytest.approx(6e9 / 0.5e12)
    eight = costmodel.epoch_seconds_on_paper(1e6, passes, 1000, 1.0, 0.5, devices=8,
                                             scaling=0.5)
    assert eight == pytest.approx(one / 4)
    with_val = costmodel.epoch_seconds_on_paper(1e6, passes, 1000, 1.0, 0.5, val_images=100,
                                                val_steps=10)
    assert with_val == pytest.approx(one + 2e6 * 22 * 100 / 0.5e12)
