"""Batched inference: one compiled function per classifier and image shape,
batches in order, any batch size."""

import gc
import weakref

import keras
import numpy as np

from atalp_keras.attacks import batching
from conftest import small_cnn


def test_predict_logits_matches_the_model_for_any_batch_size(digits):
    x = digits[2][:37]
    model = small_cnn()
    expected = np.asarray(model(x, training=False))
    for batch_size in (1, 5, 37, 100):
        np.testing.assert_allclose(batching.predict_logits(model, x, batch_size), expected,
                                   rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(batching.predict_classes(model, x, 8), expected.argmax(-1))


def test_one_trace_per_classifier_and_the_cache_does_not_keep_it_alive(digits):
    x = digits[2][:20]
    model = small_cnn()
    fn = batching.compiled_logits(model, x.shape[1:])
    for batch_size in (3, 7, 20):
        batching.predict_logits(model, x, batch_size)
    assert fn.experimental_get_tracing_count() == 1
    assert batching.compiled_logits(model, x.shape[1:]) is fn
    ref = weakref.ref(model)
    del model, fn
    gc.collect()
    keras.backend.clear_session()
    gc.collect()
    assert ref() is None


def test_map_batches_keeps_order_and_outputs():
    a, b = np.arange(10), np.arange(10) * 2
    s, d = batching.map_batches(lambda u, v: (u + v, u - v), [a, b], 3)
    np.testing.assert_array_equal(s, 3 * a)
    np.testing.assert_array_equal(d, -a)
    assert [p.start for p in batching.batch_slices(10, 4)] == [0, 4, 8]
