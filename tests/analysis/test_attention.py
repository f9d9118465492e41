"""atalp_keras.analysis.attention: stage attention maps and their upsampling."""

import keras
import numpy as np
import pytest

from atalp_keras import analysis


def test_attention_maps_unit_norm_then_max_one(resnet, digits):
    x = digits[2][:6]
    maps = analysis.attention_maps(resnet, x)
    assert [m.shape for m in maps] == [(6, 8, 8), (6, 4, 4), (6, 2, 2), (6, 2, 2)]
    for stage_maps in maps:
        norms = np.linalg.norm(stage_maps.reshape(6, -1), axis=1)
        np.testing.assert_allclose(norms, 1.0, atol=1e-5)
        assert stage_maps.min() >= 0.0
        up = analysis.upsample_to(stage_maps, (8, 8))
        assert up.shape == (6, 8, 8)
        np.testing.assert_allclose(up.reshape(6, -1).max(axis=1), 1.0, atol=1e-6)
        assert up.min() >= 0.0


def test_attention_maps_need_functional_model():
    class Subclassed(keras.Model):
        def call(self, x, training=False):
            return x

    with pytest.raises(ValueError, match=r"\.keras"):
        analysis.attention_maps(Subclassed(), np.zeros((1, 8, 8, 1), np.float32))


def test_short_stage_name():
    assert analysis.short_stage_name("conv3_block4_out") == "conv3_x"
    assert analysis.short_stage_name("pooled") == "pooled"
