"""The built-in backbones under ``KERAS_BACKEND=jax``: they build, run, and
their BatchNorm-folded attack view (`atalp_keras.folding`) gives the
classifier's logits and input gradients; `FusedBatchNormalization` is Keras'
BatchNorm there (TensorFlow's fused kernel does not exist on JAX).

Training a backbone under JAX and loading it under TensorFlow is in
test_save_load_jax.py.
"""

import jax
import keras
import numpy as np
import pytest

from atalp_keras import backend
from atalp_keras.backbones import FusedBatchNormalization, build_backbone
from atalp_keras.folding import attack_view

# The registry's own builders; resnet34 is resnet18's code with more blocks,
# and keras.applications' ResNets (resnet50/101/152) use Keras' BatchNorm.
BACKBONES = {"tiny": (8, 8, 1), "tiny_deep": (8, 8, 1), "fmnist": (28, 28, 1),
             "fmnist_deep": (28, 28, 1), "cnn": (8, 8, 1), "resnet18": (32, 32, 3)}


def _random_statistics(model, seed=0):
    """Non-trivial BatchNorm weights, so a wrong fold or a skipped BatchNorm shows."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 2.0, c), rng.normal(0.0, 0.1, c),
                               rng.normal(0.0, 0.1, c), rng.uniform(0.5, 2.0, c)])


def _pair(shape, momentum=0.5):
    ours = FusedBatchNormalization(momentum=momentum)
    theirs = keras.layers.BatchNormalization(momentum=momentum)
    for layer in (ours, theirs):
        layer.build(shape)
    rng = np.random.default_rng(0)
    c = shape[-1]
    weights = [rng.uniform(0.5, 2.0, c), rng.normal(size=c), rng.normal(size=c),
               rng.uniform(0.5, 2.0, c)]
    ours.set_weights(weights)
    theirs.set_weights(weights)
    return ours, theirs


@pytest.mark.parametrize("training", [True, False])
def test_fused_batchnorm_is_keras_batchnorm_under_jax(training):
    shape = (3, 5, 4, 6)
    ours, theirs = _pair(shape)
    assert ours.get_config() == {**theirs.get_config(), "name": ours.name}
    x = np.random.default_rng(1).normal(2.0, 3.0, shape).astype("float32")
    weights = np.arange(np.prod(shape), dtype="float32").reshape(shape) / np.prod(shape)
    results = []
    for layer in (ours, theirs):
        trainable = [v.value for v in layer.trainable_variables]
        non_trainable = [v.value for v in layer.non_trainable_variables]

        # Jitted: a TensorFlow op inside would fail on JAX's traced arrays.
        @jax.jit
        def step(x, trainable=trainable, non_trainable=non_trainable, layer=layer):
            def loss(x):
                y, stats = layer.stateless_call(trainable, non_trainable, x, training=training)
                # A non-uniform upstream gradient, so the batch-statistics terms matter.
                return (y * weights).sum(), (y, stats)
            (_, (y, stats)), grad = jax.value_and_grad(loss, has_aux=True)(x)
            return y, stats, grad

        results.append([np.asarray(a) for a in jax.tree_util.tree_leaves(step(x))])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    # In training the moving statistics moved (to the same values, above).
    if training:
        assert not np.allclose(results[0][1], ours.moving_mean.numpy())


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_backbone_runs_and_its_folded_view_matches_under_jax(name):
    shape = BACKBONES[name]
    keras.utils.set_random_seed(0)
    model = build_backbone(name, shape, 10)
    _random_statistics(model)
    x = np.random.default_rng(2).uniform(size=(4,) + shape).astype("float32")
    view = attack_view(model)
    if name != "cnn":  # the plain CNN has no BatchNorm to fold
        assert view is not model
    assert not any(type(layer) is FusedBatchNormalization for layer in view.layers)

    def logits_and_grad(net):
        def objective(images):
            logits = net(images, training=False)
            return logits[:, 3].sum() - logits[:, 7].sum(), logits

        # Compiled as the attacks compile it (op by op, JAX compiles each op).
        run = backend.compiled(lambda images: backend.value_and_grad(objective, images)[1:],
                               None, stateful=lambda: (net,))
        logits, grad = run(x)
        return np.asarray(logits), np.asarray(grad)

    (logits, grad), (folded, folded_grad) = logits_and_grad(model), logits_and_grad(view)
    assert logits.shape == (4, 10) and np.all(np.isfinite(logits))
    # Float rounding, relative to each output's scale; a skipped or misfolded
    # BatchNorm is off by O(1). Gradients are compared as a whole: where a
    # ReLU's input is within rounding of zero, one pixel's gradient may take
    # the other branch in one of the two (seen once in resnet18).
    np.testing.assert_allclose(folded, logits, rtol=1e-4, atol=1e-4 * np.abs(logits).max())
    assert np.linalg.norm(folded_grad - grad) <= 1e-3 * np.linalg.norm(grad)
    assert np.mean(np.sign(folded_grad) == np.sign(grad)) > 0.99
