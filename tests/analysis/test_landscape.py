"""atalp_keras.analysis.landscape: the loss surface (Figure 6)."""

import keras
import numpy as np
import tensorflow as tf

from atalp_keras import analysis
from atalp_keras.analysis.landscape import centred_grid


def test_loss_landscape_centre_and_gradient_direction(undefended_model, digits,
                                                      cross_entropy):
    model = undefended_model
    x, y = digits[2][:4], digits[3][:4]
    a, b, z, (r1, r2) = analysis.loss_landscape(model, x, y, eps_max=0.2, seed=1,
                                                per_image=True, return_directions=True)
    assert z.shape == (4, 21, 21) and a[10] == 0.0 and b[10] == 0.0
    clean_ce = cross_entropy(model(x, training=False), y)
    np.testing.assert_allclose(z[:, 10, 10], clean_ce, rtol=1e-4, atol=1e-6)

    x_t = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(x_t)
        loss = tf.reduce_sum(keras.losses.sparse_categorical_crossentropy(
            y, model(x_t, training=False), from_logits=True))
    np.testing.assert_array_equal(r1, np.sign(tape.gradient(loss, x_t).numpy()))
    assert set(np.unique(r2)) == {-1.0, 1.0}

    i, j = 14, 7  # an off-centre grid point, computed by hand
    point = np.clip(x + a[i] * r1 + b[j] * r2, 0.0, 1.0).astype(np.float32)
    np.testing.assert_allclose(z[:, i, j], cross_entropy(model(point, training=False), y),
                               rtol=1e-4)

    # Up the gradient sign the loss grows (on average over the positive side).
    assert z[:, 11:, 10].mean() > z[:, 10, 10].mean()
    _, _, z_mean = analysis.loss_landscape(model, x, y, eps_max=0.2, seed=1)
    np.testing.assert_allclose(z_mean, z.mean(axis=0), rtol=1e-6)


def test_centred_grid_holds_the_clean_input():
    grid = centred_grid(0.3, 7)
    assert grid[3] == 0.0 and grid[0] == -0.3 and grid[-1] == 0.3
    assert len(centred_grid(0.2, 4)) == 4 and 0.0 not in centred_grid(0.2, 4)
