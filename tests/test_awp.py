"""Adversarial weight perturbation (issue 22, item 1): the per-layer
perturbation against a hand computation, one whole AWP step of a two-layer
model against numpy, weights exactly restored, the warm-up, the switch's
checks and the divergence stop."""

import keras
import numpy as np
import pytest

import atalp_keras as ak
from atalp_keras import awp
from atalp_keras.errors import UsageError


def test_perturbation_is_gamma_times_the_layer_norm_along_the_gradient():
    w = np.array([[3.0, 4.0]], "float32")             # ||w|| = 5
    g = np.array([[0.0, 2.0]], "float32")             # ||g|| = 2
    bias = np.array([1.0, 1.0], "float32")
    step, = awp.weight_perturbation([w], [g], 0.1)
    # 0.1 * 5 / 2 * [0, 2] = [0, 0.5]
    np.testing.assert_allclose(np.asarray(step), [[0.0, 0.5]], atol=1e-7)
    # The gradient's scale does not matter, a non-finite one gives no step.
    step, = awp.weight_perturbation([w], [1000 * g], 0.1)
    np.testing.assert_allclose(np.asarray(step), [[0.0, 0.5]], atol=1e-6)
    step, = awp.weight_perturbation([w], [np.array([[np.inf, 1.0]], "float32")], 0.1)
    assert np.all(np.asarray(step) == 0)
    # Only kernels (rank >= 2) are perturbed: not biases, not BatchNorm.
    assert awp.perturbed_indices([w, bias, g]) == [0, 2]


def _two_layer(w1, w2):
    inputs = keras.Input((1, 1, 2))
    h = keras.layers.Flatten()(inputs)
    h = keras.layers.Dense(3, use_bias=False, name="hidden")(h)
    logits = keras.layers.Dense(2, use_bias=False, name="logits")(h)
    classifier = keras.Model(inputs, logits)
    classifier.set_weights([w1, w2])
    return classifier


def _ce_grads(x, y, w1, w2):
    """Mean softmax CE of the linear model x -> x w1 w2, and its gradients
    w.r.t. w1, w2 and x (by hand)."""
    h = x @ w1
    z = h @ w2
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    onehot = np.eye(2)[y]
    dz = (p - onehot) / len(y)
    dh = dz @ w2.T
    loss = -np.mean(np.log(p[np.arange(len(y)), y]))
    return loss, x.T @ dh, h.T @ dz, dh @ w1.T


def _data():
    rng = np.random.default_rng(3)
    w1 = rng.normal(size=(2, 3)).astype("float64")
    w2 = rng.normal(size=(3, 2)).astype("float64")
    x = rng.uniform(0.2, 0.8, size=(4, 2))
    y = np.array([0, 1, 1, 0])
    return w1, w2, x, y


def _fitted(lr, gamma, w1, w2, x, y, warmup=0, epochs=1):
    classifier = _two_layer(w1.astype("float32"), w2.astype("float32"))
    model = ak.ATALPModel(classifier, stage_layers=[])
    model.compile(keras.optimizers.SGD(lr), method="pat",
                  attack=ak.FGSMAttack(0.1, random_start=False), eval_attack=None,
                  awp_gamma=gamma, awp_warmup_epochs=warmup, clean_metrics=False)
    model.fit(x.reshape(4, 1, 1, 2).astype("float32"), y, batch_size=4, epochs=epochs,
              verbose=0, shuffle=False)
    return model, [v.numpy() for v in classifier.trainable_variables]


def test_one_awp_step_matches_the_hand_computation():
    w1, w2, x, y = _data()
    gamma, lr = 0.05, 0.5
    # FGSM on the unperturbed weights, clipped to [0, 1].
    *_, dx = _ce_grads(x, y, w1, w2)
    x_adv = np.clip(x + 0.1 * np.sign(dx), 0, 1)
    # The ascent step at w, rescaled per layer, then the gradient at w + d.
    _, g1, g2, _ = _ce_grads(x_adv, y, w1, w2)
    d1 = gamma * np.linalg.norm(w1) / np.linalg.norm(g1) * g1
    d2 = gamma * np.linalg.norm(w2) / np.linalg.norm(g2) * g2
    _, G1, G2, _ = _ce_grads(x_adv, y, w1 + d1, w2 + d2)
    _, (new1, new2) = _fitted(lr, gamma, w1, w2, x, y)
    np.testing.assert_allclose(new1, w1 - lr * G1, atol=1e-5)
    np.testing.assert_allclose(new2, w2 - lr * G2, atol=1e-5)
    # ... which is not plain PGD-AT's step (the test can tell them apart).
    _, P1, _, _ = _ce_grads(x_adv, y, w1, w2)
    assert np.max(np.abs((w1 - lr * P1) - new1)) > 1e-3


def test_the_weights_are_exactly_restored():
    w1, w2, x, y = _data()
    # A zero learning rate: whatever AWP did to the weights must be undone bit for bit.
    _, (new1, new2) = _fitted(0.0, 0.5, w1, w2, x, y)
    assert np.array_equal(new1, w1.astype("float32"))
    assert np.array_equal(new2, w2.astype("float32"))


def test_warm_up_epochs_train_without_the_perturbation():
    w1, w2, x, y = _data()
    plain, plain_w = _fitted(0.5, 0.0, w1, w2, x, y)
    warm, warm_w = _fitted(0.5, 0.05, w1, w2, x, y, warmup=1)
    assert all(np.array_equal(a, b) for a, b in zip(plain_w, warm_w))
    assert not warm._awp_active
    warm, warm_w = _fitted(0.5, 0.05, w1, w2, x, y, warmup=1, epochs=2)
    plain, plain_w = _fitted(0.5, 0.0, w1, w2, x, y, epochs=2)
    assert warm._awp_active
    assert max(np.max(np.abs(a - b)) for a, b in zip(plain_w, warm_w)) > 1e-4


def test_settings_are_checked_and_saved():
    classifier = ak.tiny_resnet((8, 8, 1), 10, widths=(4, 4, 4, 4))
    model = ak.ATALPModel(classifier)
    with pytest.raises(UsageError, match=r"awp_gamma=1.5"):
        model.compile("sgd", method="pat", awp_gamma=1.5)
    with pytest.raises(UsageError, match=r"awp_warmup_epochs=-1"):
        model.compile("sgd", method="pat", awp_gamma=0.01, awp_warmup_epochs=-1)
    with pytest.raises(UsageError, match=r"awp_gamma=0.01, method='standard'"):
        model.compile("sgd", method="standard", awp_gamma=0.01)
    model.compile("sgd", method="mart", awp_gamma=0.005, awp_warmup_epochs=2)
    config = model.get_compile_config()["atalp"]
    assert (config["awp_gamma"], config["awp_warmup_epochs"]) == (0.005, 2)


def test_training_config_refuses_a_warm_up_without_awp():
    from atalp_keras.training import TrainConfig

    with pytest.raises(UsageError, match=r"awp_warmup_epochs=3"):
        TrainConfig(awp_warmup_epochs=3).validate()
    with pytest.raises(UsageError, match=r"awp_gamma"):
        TrainConfig(awp_gamma=1.0).validate()


def test_divergence_stops_training_with_a_clear_message():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(64, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 10, 64)
    keras.utils.set_random_seed(0)
    model = ak.ATALPModel(ak.tiny_resnet((8, 8, 1), 10, widths=(4, 4, 4, 4)))
    # A learning rate of 1e8 blows the weights up within a few steps.
    model.compile(keras.optimizers.SGD(1e8), method="pat",
                  attack=ak.PGDAttack(0.1, 0.05, 1), eval_attack=None, awp_gamma=0.01)
    with pytest.raises(awp.TrainingDivergedError) as error:
        model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    message = str(error.value)
    assert "diverged in epoch 1" in message and "awp_gamma (received 0.01)" in message
    assert isinstance(error.value, UsageError)  # the CLIs print it in one line, exit 2


def test_divergence_guard_reads_the_running_loss():
    guard = awp.DivergenceGuard(max_loss=100.0, every=2)
    guard._epoch = 4
    guard.on_train_batch_end(0, {"loss": float("nan")})  # not a checked batch
    guard.on_train_batch_end(1, {"loss": 3.0})
    guard.set_model(keras.Sequential())
    with pytest.raises(awp.TrainingDivergedError, match=r"epoch 5 at batch 2.*inf"):
        guard.on_train_batch_end(1, {"loss": float("inf")})
    with pytest.raises(awp.TrainingDivergedError, match=r"1000.0"):
        guard.on_epoch_end(4, {"loss": 1000.0})
