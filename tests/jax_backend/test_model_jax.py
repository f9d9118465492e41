"""ATALPModel's fit / evaluate / predict under Keras' JAX backend (issue 23):
every preset, AWP, sample weights, the input checks, callbacks, and one step
checked against TensorFlow on the same weights.

Tiny shapes (8x8 images, 4-channel stages, PGD-1): compiling the steps is
most of the time.
"""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import atalp_keras as ak
from atalp_keras.awp import TrainingDivergedError
from atalp_keras.errors import UsageError
from atalp_keras.model import ATTACK_MASK
from conftest import assert_trained_alike

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The logs fit writes under TensorFlow, per preset (tests/test_model.py).
ADV = {"loss", "ce_natural", "ce_adv", "accuracy", "adv_accuracy"}
PAIRED = ADV | {"alp", "at"}
KEYS = {
    "standard": {"loss", "ce_natural", "accuracy"},
    "pat": ADV, "fast": ADV,
    "alp": PAIRED, "at": PAIRED, "at_alp": PAIRED,
    "trades": PAIRED | {"trades_kl"},
    "mart": PAIRED | {"mart_bce", "mart_kl"},
}


def _data(n=16, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.uniform(size=(n, 8, 8, 1)).astype("float32"),
            rng.integers(0, 10, n).astype("int32"))


def _resnet(seed=0):
    keras.utils.set_random_seed(seed)
    return ak.tiny_resnet((8, 8, 1), 10, widths=(4, 4, 4, 4))


def _plain_net(seed=0):
    """No BatchNorm: the training pass equals inference, so it can be
    recomputed by hand, and each example's loss depends on it alone."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 1))
    a = keras.layers.Conv2D(4, 3, padding="same", activation="relu",
                            name="conv2_block1_out")(inputs)
    b = keras.layers.Conv2D(6, 3, strides=2, padding="same", activation="relu",
                            name="conv3_block1_out")(a)
    outputs = keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(b))
    return keras.Model(inputs, outputs)


def _attack(method, random_start=False):
    if method == "trades":
        return ak.TRADESAttack(0.2, 0.05, 1, random_start=random_start)
    if method == "fast":
        return ak.FGSMAttack(0.2, step_size=0.25, random_start=random_start)
    if method == "standard":
        return "auto"
    return ak.PGDAttack(0.2, 0.05, 1, random_start=random_start)


def _model(method="pat", classifier=None, lr=0.1, **kwargs):
    model = ak.ATALPModel(classifier or _resnet())
    preset, _, extra = method.partition("+")
    kwargs.setdefault("eval_attack", None)
    kwargs.setdefault("attack", _attack(preset))
    model.compile(keras.optimizers.SGD(lr), method=preset,
                  awp_gamma=0.01 if extra == "awp" else 0.0, **kwargs)
    return model


def test_the_backend_is_jax():
    assert keras.backend.backend() == "jax"


@pytest.mark.parametrize("method", sorted(KEYS))
def test_every_preset_trains_with_finite_terms_and_the_tensorflow_logs(method):
    x, y = _data()
    model = _model(method, attack=_attack(method, random_start=True))
    # The optimizer updates self.trainable_variables, the step reads the
    # classifier's: the same variables in the same order.
    assert [id(v) for v in model.trainable_variables] == \
        [id(v) for v in model.classifier.trainable_variables]
    before = [np.array(w) for w in model.classifier.get_weights()]
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0).history
    assert set(history) == KEYS[method]
    for key, values in history.items():
        assert np.isfinite(values[-1]), (key, values)
    kernels = [(a, b) for a, b in zip(before, model.classifier.get_weights()) if a.ndim == 4]
    assert all(not np.allclose(a, b) for a, b in kernels)


# One step on the same weights and batch under TensorFlow, in a subprocess:
# per case the logs and the weights after the step.
_TF_STEPS = textwrap.dedent("""
    import json, sys
    import numpy as np, keras
    import atalp_keras as ak
    folder, count, cases = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
    data = np.load(folder + "/data.npz")
    results = {}
    for method, gamma, pair_pass in cases:
        classifier = ak.tiny_resnet((8, 8, 1), 10, widths=(4, 4, 4, 4))
        classifier.set_weights([data[f"w{i}"] for i in range(count)])
        model = ak.ATALPModel(classifier)
        model.compile(keras.optimizers.SGD(0.5), method=method,
                      attack=ak.PGDAttack(0.2, 0.05, 2, random_start=False),
                      eval_attack=None, awp_gamma=gamma, pair_pass=pair_pass)
        logs = model.fit(data["x"], data["y"], batch_size=16, shuffle=False,
                         verbose=0).history
        name = f"{method}_{gamma}_{pair_pass}"
        np.savez(f"{folder}/{name}.npz", *classifier.get_weights())
        results[name] = {k: float(v[-1]) for k, v in logs.items()}
    print(json.dumps(results))
""")

# (method, awp_gamma, pair_pass): the separate passes update BatchNorm's
# statistics twice per step, under AWP in a StatelessScope.
CROSS = [("at_alp", 0.0, "joint"), ("mart", 0.0, "joint"), ("trades", 0.0, "joint"),
         ("pat", 0.01, "joint"), ("trades", 0.005, "separate"), ("at_alp", 0.0, "separate")]


@pytest.fixture(scope="module")
def tensorflow_steps(tmp_path_factory):
    """The TensorFlow side of `test_one_step_equals_tensorflows`: one
    subprocess for every case, started first and read when needed."""
    folder = tmp_path_factory.mktemp("cross")
    x, y = _data(16, seed=3)
    weights = _resnet(seed=5).get_weights()
    np.savez(folder / "data.npz", x=x, y=y, **{f"w{i}": w for i, w in enumerate(weights)})
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=ROOT, CUDA_VISIBLE_DEVICES="")
    process = subprocess.Popen(
        [sys.executable, "-c", _TF_STEPS, str(folder), str(len(weights)), json.dumps(CROSS)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    results = {}

    def result(method, gamma, pair_pass):
        if not results:
            stdout, stderr = process.communicate(timeout=900)
            assert process.returncode == 0, stderr[-3000:]
            results.update(json.loads(stdout.strip().splitlines()[-1]))
        name = f"{method}_{gamma}_{pair_pass}"
        after = np.load(folder / f"{name}.npz")
        return results[name], [after[f"arr_{i}"] for i in range(len(weights))]

    yield x, y, weights, result
    if process.poll() is None:
        process.kill()
        process.communicate()


@pytest.mark.parametrize("method, gamma, pair_pass", CROSS)
def test_one_step_equals_tensorflows(method, gamma, pair_pass, tensorflow_steps):
    x, y, weights, tensorflow_result = tensorflow_steps
    classifier = _resnet()
    classifier.set_weights(weights)
    model = ak.ATALPModel(classifier)
    model.compile(keras.optimizers.SGD(0.5), method=method,
                  attack=ak.PGDAttack(0.2, 0.05, 2, random_start=False), eval_attack=None,
                  awp_gamma=gamma, pair_pass=pair_pass)
    logs = model.fit(x, y, batch_size=16, shuffle=False, verbose=0).history
    expected, after_tf = tensorflow_result(method, gamma, pair_pass)
    assert set(logs) == set(expected)
    for key, value in expected.items():
        assert logs[key][-1] == pytest.approx(value, rel=2e-4, abs=2e-5), key
    moved = 0
    for start, jax_value, tf_value in zip(weights, classifier.get_weights(), after_tf):
        np.testing.assert_allclose(jax_value, tf_value, rtol=1e-3, atol=2e-5)
        moved += not np.allclose(start, tf_value)
    assert moved > len(weights) // 2  # kernels, biases and BatchNorm statistics


def _cross_entropy(logits, y):
    logits = logits - logits.max(-1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return -log_probs[np.arange(len(y)), y]


def _attention(features):
    q = (features.astype(np.float64) ** 2).sum(-1).reshape(len(features), -1)
    return q / np.maximum(np.linalg.norm(q, axis=-1, keepdims=True), 1e-12)


def test_the_logged_terms_are_the_formulas_by_hand():
    x, y = _data(16, seed=1)
    attack = ak.PGDAttack(0.2, 0.05, 2, random_start=False)
    classifier = _plain_net()
    x_adv = attack.perturb(classifier, x, y)
    stages = keras.Model(classifier.inputs, [classifier.get_layer("conv2_block1_out").output,
                                             classifier.get_layer("conv3_block1_out").output,
                                             classifier.outputs[0]])
    *stages_nat, logits_nat = [np.asarray(a, np.float64) for a in stages.predict(x, verbose=0)]
    *stages_adv, logits_adv = [np.asarray(a, np.float64)
                               for a in stages.predict(x_adv, verbose=0)]
    ce_nat, ce_adv = _cross_entropy(logits_nat, y), _cross_entropy(logits_adv, y)
    alp = ((logits_nat - logits_adv) ** 2).mean(-1)
    at = sum(np.linalg.norm(_attention(a) - _attention(b), axis=-1)
             for a, b in zip(stages_nat, stages_adv))
    expected = {"ce_natural": ce_nat.mean(), "ce_adv": ce_adv.mean(), "alp": alp.mean(),
                "at": at.mean(),
                "loss": (0.5 * ce_nat + 0.5 * ce_adv + 0.5 * alp + 1.0 * at).mean(),
                "accuracy": (logits_nat.argmax(-1) == y).mean(),
                "adv_accuracy": (logits_adv.argmax(-1) == y).mean()}
    model = _model("at_alp", classifier, attack=attack)
    logs = model.fit(x, y, batch_size=16, verbose=0).history
    assert set(logs) == set(expected)
    for key, value in expected.items():
        assert logs[key][-1] == pytest.approx(value, rel=1e-4, abs=1e-6), key


def _pat_loss_grads(classifier, values, x_adv, y):
    """The gradient of pat's loss (mean CE on x_adv) at the kernel values
    ``values``, taken with jax directly on the classifier's stateless call."""
    import jax

    def loss(trainable):
        logits, _ = classifier.stateless_call(trainable, [], x_adv, training=True)
        return keras.ops.mean(ak.cross_entropy(y, logits))

    return [np.asarray(g) for g in jax.grad(loss)(values)]


def test_awp_updates_the_unperturbed_weights_by_the_gradient_at_the_perturbed_ones():
    x, y = _data(16, seed=2)
    attack = ak.PGDAttack(0.2, 0.05, 2, random_start=False)
    classifier = _plain_net()
    x_adv = attack.perturb(classifier, x, y)
    w0 = [np.asarray(v.value) for v in classifier.trainable_variables]
    gamma, lr = 0.05, 0.5
    g0 = _pat_loss_grads(classifier, w0, x_adv, y)
    # Kernels (rank >= 2) move by gamma ||w|| g / ||g||; biases stay.
    perturbed = [w + gamma * np.linalg.norm(w) * g / np.linalg.norm(g) if w.ndim >= 2 else w
                 for w, g in zip(w0, g0)]
    g_perturbed = _pat_loss_grads(classifier, perturbed, x_adv, y)
    model = ak.ATALPModel(classifier)
    model.compile(keras.optimizers.SGD(lr), method="pat", attack=attack, eval_attack=None,
                  awp_gamma=gamma)
    model.fit(x, y, batch_size=16, verbose=0)
    after = [np.asarray(v.value) for v in classifier.trainable_variables]
    for w, g, g_plain, a in zip(w0, g_perturbed, g0, after):
        np.testing.assert_allclose(a, w - lr * g, rtol=1e-4, atol=1e-6)
    # The perturbation mattered: plain SGD lands elsewhere.
    assert not all(np.allclose(a, w - lr * g, atol=1e-6) for w, g, a in zip(w0, g0, after))


@pytest.mark.parametrize("method", ["at_alp", "pat+awp"])
def test_zero_weight_on_half_the_batch_equals_training_on_the_other_half(method):
    x, y = _data(32, seed=4)
    init = _plain_net().get_weights()
    weighted = _model(method, _plain_net(), lr=1.0)
    weighted.classifier.set_weights(init)
    w = np.r_[np.ones(16), np.zeros(16)].astype("float32")
    weighted.fit(x, y, sample_weight=w, batch_size=32, shuffle=False, verbose=0)
    half = _model(method, _plain_net(), lr=1.0)
    half.classifier.set_weights(init)
    half.fit(x[:16], y[:16], batch_size=16, shuffle=False, verbose=0)
    assert_trained_alike(weighted.classifier.get_weights(), half.classifier.get_weights(), init)


def test_class_weight_equals_the_matching_sample_weight():
    x, y = _data(16, seed=6)
    init = _plain_net().get_weights()
    class_weight = {k: float(k % 3) for k in range(10)}
    results = []
    for kwargs in ({"class_weight": class_weight},
                   {"sample_weight": np.array([class_weight[k] for k in y], "float32")}):
        model = _model("alp", _plain_net(), lr=1.0)
        model.classifier.set_weights(init)
        logs = model.fit(x, y, batch_size=16, shuffle=False, verbose=0, **kwargs).history
        results.append((logs, model.classifier.get_weights()))
    (logs_a, weights_a), (logs_b, weights_b) = results
    for key in logs_a:
        assert logs_a[key][-1] == pytest.approx(logs_b[key][-1], rel=1e-5), key
    for a, b in zip(weights_a, weights_b):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_the_attacks_random_start_advances_from_step_to_step():
    x, y = _data(32)
    attack = ak.PGDAttack(0.2, 0.05, 1, seed=3)
    model = _model("pat", attack=attack)
    state = model.non_trainable_variables
    assert any(v is attack.seed_generator.state for v in state)
    before = np.asarray(attack.seed_generator.state.value).copy()
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    after = np.asarray(attack.seed_generator.state.value)
    # One draw (the random start) per step, 4 steps.
    assert after[1] - before[1] == 4 and after[0] == before[0]
    # Saved weights do not carry the seed.
    assert len(model.get_weights()) == len(model.classifier.get_weights())


def test_steps_per_execution_trains_as_one_step_per_call():
    """Two steps per jitted call (Keras' steps_per_execution) run the same
    steps, the attack's random starts and BatchNorm statistics included."""
    x, y = _data(32, seed=4)
    results = []
    for steps in (1, 2):
        attack = ak.PGDAttack(0.2, 0.05, 1, seed=3)
        model = _model("at_alp+awp", classifier=_resnet(seed=6), attack=attack,
                       steps_per_execution=steps)
        init = model.classifier.get_weights()
        logs = model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0).history
        results.append((model.classifier.get_weights(), logs,
                        np.asarray(attack.seed_generator.state.value).copy()))
    (one, logs_one, seed_one), (two, logs_two, seed_two) = results
    assert_trained_alike(one, two, init)
    np.testing.assert_array_equal(seed_one, seed_two)
    for key, values in logs_one.items():
        assert logs_two[key][-1] == pytest.approx(values[-1], rel=1e-4, abs=1e-6), key


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_trains_with_float32_logits_and_weights(policy):
    """Mixed precision (float16 with Keras' dynamic loss scaling) under
    jax.jit, AT+ALP with AWP: finite terms, float32 variables and logits,
    and the weights move."""
    x, y = _data(32, seed=2)
    keras.mixed_precision.set_global_policy(policy)
    try:
        classifier = _resnet(seed=1)
        optimizer = keras.optimizers.SGD(0.1)
        if policy == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        model = ak.ATALPModel(classifier)
        model.compile(optimizer, method="at_alp", attack=_attack("at_alp"), awp_gamma=0.01,
                      eval_attack=ak.PGDAttack(0.2, 0.05, 1, random_start=False))
        init = classifier.get_weights()
        logs = model.fit(x, y, batch_size=8, epochs=1, verbose=0,
                         validation_data=(x[:16], y[:16])).history
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert all(np.isfinite(v[-1]) for v in logs.values())
    assert classifier.get_layer("conv1_conv").compute_dtype == policy.split("_")[1]
    assert all(w.dtype == np.float32 for w in classifier.get_weights())
    assert any(not np.allclose(a, b) for a, b in zip(init, classifier.get_weights()))
    assert np.asarray(classifier(x[:2])).dtype == np.float32


def test_evaluate_as_a_list_lines_up_with_metrics_names():
    x, y = _data()
    model = _model("at_alp", eval_attack=ak.PGDAttack(0.2, 0.05, 1, random_start=False))
    logs = model.evaluate(x, y, batch_size=8, verbose=0, return_dict=True)
    values = model.evaluate(x, y, batch_size=8, verbose=0)
    assert model.metrics_names == ["loss", "ce_natural", "ce_adv", "accuracy", "adv_accuracy"]
    assert values == pytest.approx([logs[k] for k in model.metrics_names])
    assert logs["loss"] == pytest.approx(logs["ce_adv"])
    assert logs["ce_adv"] > logs["ce_natural"]  # the attack ran


class _Batches(keras.utils.PyDataset):
    """Fixed batches, for a bad batch after a good one."""

    def __init__(self, batches):
        super().__init__()
        self.batches = batches

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, index):
        return self.batches[index]


def test_the_attack_mask_scores_only_the_marked_examples():
    x, y = _data(24)
    attack = ak.PGDAttack(0.2, 0.05, 2, random_start=False)
    model = _model("pat", eval_attack=attack)
    everything = model.evaluate(x, y, batch_size=8, return_dict=True, verbose=0)
    marked = model.evaluate(x[:8], y[:8], batch_size=8, return_dict=True, verbose=0)
    mask = np.r_[np.ones(8), np.zeros(16)].astype("float32")
    batches = [(x[i:i + 8], y[i:i + 8], {ATTACK_MASK: mask[i:i + 8]}) for i in (0, 8, 16)]
    logs = model.evaluate(_Batches(batches), return_dict=True, verbose=0)
    assert logs["accuracy"] == pytest.approx(everything["accuracy"])
    assert logs["ce_natural"] == pytest.approx(everything["ce_natural"], rel=1e-5)
    for key in ("adv_accuracy", "ce_adv", "loss"):
        assert logs[key] == pytest.approx(marked[key], rel=1e-5), key


def test_predict_refuses_0_255_images_and_gives_the_logits():
    x, _ = _data()
    model = _model("pat")
    with pytest.raises(UsageError, match="divide by 255"):
        model.predict(x * 255, verbose=0)
    with pytest.raises(UsageError, match=r"A batch of the prediction data is invalid: "
                                         r"Pixels must be in \[0, 1\].*Received min/max: "):
        model.predict(_Batches([(x[:8],), (x[8:] * 255,)]), verbose=0)
    np.testing.assert_allclose(model.predict(x, batch_size=8, verbose=0),
                               model.classifier(x, training=False), rtol=1e-5, atol=1e-6)


def test_a_bad_later_batch_is_one_line_and_the_model_stays_usable():
    x, y = _data()
    model = _model("pat")
    model.fit(x, y, batch_size=8, verbose=0)
    weights = model.classifier.get_weights()
    bad = _Batches([(x[:8], y[:8]), (x[8:], np.full(8, 12, "int32"))])
    with pytest.raises(UsageError, match=r"A batch of the training data is invalid: "
                                         r"Labels must be in \[0, 10\)\. Received min/max: 12 12"):
        model.fit(bad, epochs=1, verbose=0)
    # The first batch trained; the refused one changed nothing and left the
    # variables filled (Keras' JAX fit empties them for the epoch).
    assert all(np.isfinite(w).all() for w in model.classifier.get_weights())
    assert not all(np.allclose(a, b) for a, b in zip(weights, model.classifier.get_weights()))
    nan = x.copy()
    nan[0, 0, 0, 0] = np.nan
    with pytest.raises(UsageError, match="NaN or inf pixels; count: 1"):
        model.evaluate(_Batches([(nan, y)]), verbose=0)
    assert np.isfinite(model.fit(x, y, batch_size=8, verbose=0).history["loss"][-1])


def test_early_stopping_on_adv_accuracy_and_the_divergence_guard():
    x, y = _data(16)
    model = _model("pat")
    stop = keras.callbacks.EarlyStopping(monitor="adv_accuracy", mode="max", min_delta=1.0,
                                         patience=0, restore_best_weights=True)
    history = model.fit(x, y, batch_size=8, epochs=5, verbose=0, callbacks=[stop])
    assert len(history.history["adv_accuracy"]) == 2 and stop.stopped_epoch == 1
    model.compile(keras.optimizers.SGD(1e9), method="pat", attack=_attack("pat"),
                  eval_attack=None)
    with pytest.raises(TrainingDivergedError, match="diverged in epoch 1"):
        model.fit(x, y, batch_size=8, epochs=3, verbose=0)


def test_awp_warmup_trains_plain_first_then_perturbed():
    x, y = _data(16)
    init = _plain_net().get_weights()

    class Capture(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seen = []

        def on_epoch_end(self, epoch, logs=None):
            self.seen.append((self.model._awp_active, self.model.classifier.get_weights()))

    warm, plain = ak.ATALPModel(_plain_net()), ak.ATALPModel(_plain_net())
    warm.compile(keras.optimizers.SGD(0.1), method="pat", attack=_attack("pat"),
                 eval_attack=None, awp_gamma=0.05, awp_warmup_epochs=1)
    plain.compile(keras.optimizers.SGD(0.1), method="pat", attack=_attack("pat"),
                  eval_attack=None)
    captured = []
    for model in (warm, plain):
        model.classifier.set_weights(init)
        captured.append(Capture())
        model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0,
                  callbacks=[captured[-1]])
    warm_seen, plain_seen = captured[0].seen, captured[1].seen
    assert [active for active, _ in warm_seen] == [False, True]
    # Epoch 1 equals plain training; epoch 2 is perturbed, so it differs.
    for a, b in zip(warm_seen[0][1], plain_seen[0][1]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert not all(np.allclose(a, b, atol=1e-6) for a, b in zip(warm_seen[1][1], plain_seen[1][1]))


def test_import_and_training_need_no_tensorflow():
    code = textwrap.dedent("""
        import sys

        class NoTensorFlow:
            def find_spec(self, name, path=None, target=None):
                if name == "tensorflow" or name.startswith("tensorflow."):
                    raise ImportError("no TensorFlow on this machine")

        sys.meta_path.insert(0, NoTensorFlow())
        import numpy as np, keras
        import atalp_keras as ak, atalp_keras.model
        model = ak.ATALPModel(ak.tiny_resnet((8, 8, 1), 10, widths=(4, 4, 4, 4)))
        model.compile("sgd", method="pat", attack=ak.PGDAttack(0.2, 0.05, 1), eval_attack=None)
        x = np.random.default_rng(0).uniform(size=(8, 8, 8, 1)).astype("float32")
        model.fit(x, np.arange(8) % 10, verbose=0)
        print(model.predict(x, verbose=0).shape, "tensorflow" in sys.modules)
    """)
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=ROOT)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split("\n")[-2] == "(8, 10) False"


def test_a_tf_distribute_strategy_is_refused_in_one_line():
    tf = pytest.importorskip("tensorflow")
    with tf.distribute.OneDeviceStrategy("/cpu:0").scope():
        model = ak.ATALPModel(_plain_net())
        with pytest.raises(UsageError, match="KERAS_BACKEND=tensorflow") as error:
            model.compile("sgd", method="pat", attack=_attack("pat"))
    assert "\n" not in str(error.value)
