"""fit with tf.data and repeated fits (issue 10, items 11 and 13)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import atalp_keras as ak
from atalp_keras.errors import UsageError


@pytest.fixture
def model():
    keras.utils.set_random_seed(0)
    model = ak.ATALPModel(ak.tiny_resnet((8, 8, 1), 10, widths=(4, 8, 8, 16)))
    model.compile("adam", method="pat", attack=ak.PGDAttack(0.2, 0.1, 1), eval_attack=None)
    return model


def test_a_third_fit_with_another_label_dtype_and_shape_works(model, digits):
    x, y = digits[0][:32], digits[1][:32]
    model.fit(x, y.astype("int32"), batch_size=16, verbose=0)
    # (N, 1) labels are refused with a hint (they caused a crashing retrace
    # before); the refusal must leave the model usable for the next fits.
    with pytest.raises(UsageError, match=r"reshape\(-1\)"):
        model.fit(x, y[:, None].astype("int64"), batch_size=16, verbose=0)
    model.fit(x, y.astype("float32"), batch_size=8, verbose=0)
    assert np.isfinite(model.fit(x, y.astype("int64"), verbose=0).history["loss"][-1])


def test_labels_of_unknown_rank_from_a_pipeline_are_checked_at_run_time(model, digits):
    x, y = digits[0][:16], digits[1][:16]
    spec = (tf.TensorSpec((None, 8, 8, 1), tf.float32), tf.TensorSpec(None, tf.int32))
    ds = tf.data.Dataset.from_generator(lambda: iter([(x[:8], y[:8]), (x[8:], y[8:])]),
                                        output_signature=spec)
    # Two batches: without a known size Keras warns that the input "ran out
    # of data" at the end of the epoch.
    ds = ds.apply(tf.data.experimental.assert_cardinality(2))
    assert np.isfinite(model.fit(ds, verbose=0).history["loss"][-1])


def test_n_by_1_labels_are_refused_through_tf_data_as_for_numpy(model, digits):
    x, y = digits[0][:16], digits[1][:16, None]
    with pytest.raises(UsageError, match=r"reshape\(-1\)"):
        model.fit(x, y, verbose=0)
    with pytest.raises(UsageError, match=r"reshape\(-1\)"):
        model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(8), verbose=0)


def test_an_empty_dataset_is_refused(model, digits):
    empty = tf.data.Dataset.from_tensor_slices((digits[0][:0], digits[1][:0])).batch(8)
    with pytest.raises(UsageError, match="empty"):
        model.fit(empty, verbose=0)
    with pytest.raises(UsageError, match="validation dataset is empty"):
        model.fit(digits[0][:8], digits[1][:8], validation_data=empty, verbose=0)


def test_0_255_pixels_in_a_pipeline_are_one_line(model, digits):
    ds = tf.data.Dataset.from_tensor_slices((digits[0][:8] * 255, digits[1][:8])).batch(8)
    with pytest.raises(UsageError, match="divide by 255") as err:
        model.fit(ds, verbose=0)
    assert "\n" not in str(err.value)
