"""No retracing after the first epoch, one attack trace per model, a prefetched
input pipeline (issue 6). Trace counts only: no timing assertions.

A step function's Python body runs only while TensorFlow traces it, so counting
calls of ``train_step`` / ``test_step`` / an attack's ``__call__`` counts traces.
The tf.functions Keras builds are also found in the closure of
``model.train_function`` and their own ``experimental_get_tracing_count()`` is
checked, which also covers the outer multi-step function.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

import atalp_keras as ak  # noqa: E402
from atalp_keras import attacks  # noqa: E402
from atalp_keras.data import make_pipeline  # noqa: E402

EPS = 0.1


def _classifier(seed=0):
    keras.utils.set_random_seed(seed)
    return ak.tiny_resnet((8, 8, 1), 10, widths=(4, 4, 4, 4))


class CountingModel(ak.ATALPModel):
    """Counts Python executions (= traces) of train_step and test_step."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.train_traces = 0
        self.test_traces = 0

    def train_step(self, data):
        self.train_traces += 1
        return super().train_step(data)

    def test_step(self, data):
        self.test_traces += 1
        return super().test_step(data)


def _tf_functions(fn):
    """The tf.function objects reachable through ``fn``'s closures."""
    found, stack, seen = [], [fn], set()
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, (keras.Model, type)):
            continue
        seen.add(id(obj))
        if hasattr(obj, "experimental_get_tracing_count") and hasattr(obj, "python_function"):
            found.append(obj)
            stack.append(obj.python_function)
        stack.extend(c for c in (getattr(obj, "__wrapped__", None),) if c is not None)
        for cell in getattr(obj, "__closure__", None) or ():
            try:
                value = cell.cell_contents
            except ValueError:  # empty cell
                continue
            if callable(value):
                stack.append(value)
    return found


def _tracing_count(fn):
    functions = _tf_functions(fn)
    assert functions, "found no tf.function behind model.train_function/test_function"
    return sum(f.experimental_get_tracing_count() for f in functions)


class TraceRecorder(keras.callbacks.Callback):
    """After every epoch: Python traces of the steps and tf.function traces."""

    def __init__(self):
        super().__init__()
        self.per_epoch = []

    def on_epoch_end(self, epoch, logs=None):
        model = self.model
        self.per_epoch.append({
            "train_step": model.train_traces,
            "test_step": model.test_traces,
            "train_function": _tracing_count(model.train_function),
        })


@pytest.fixture(scope="module")
def small_digits(digits):
    x_train, y_train, x_test, y_test = digits
    # 100 and 40 examples: a last, smaller training batch in every epoch (64 + 36).
    return x_train[:100], y_train[:100], x_test[:40], y_test[:40]


@pytest.mark.parametrize("method, jit_compile", [
    ("pat", False), ("at_alp", False), ("at_alp", True)])
def test_fit_does_not_retrace_after_first_epoch(small_digits, method, jit_compile):
    x, y, x_val, y_val = small_digits
    model = CountingModel(_classifier())
    attack = ak.PGDAttack(EPS, step_size=EPS / 2, num_steps=2, seed=0)
    model.compile(optimizer="adam", method=method, attack=attack,
                  eval_attack=ak.PGDAttack(EPS, num_steps=2, seed=1), jit_compile=jit_compile)
    recorder = TraceRecorder()
    model.fit(x, y, batch_size=64, epochs=5, validation_data=(x_val, y_val), verbose=0,
              callbacks=[recorder])
    first, last = recorder.per_epoch[0], recorder.per_epoch[-1]
    # Epoch 1 may trace twice: the full batch, then the smaller last batch
    # (reduce_retracing relaxes the batch dimension to None). Under XLA the
    # relaxed trace is compiled again for the full batch in epoch 2: a new XLA
    # program, not a new trace, so the counts below are the same.
    assert 1 <= first["train_step"] <= 2
    assert 1 <= first["test_step"] <= 2
    assert last == first, recorder.per_epoch

    # A second fit on the same model reuses the traced function.
    model.fit(x, y, batch_size=64, epochs=2, verbose=0, callbacks=[recorder])
    assert recorder.per_epoch[-1]["train_step"] == first["train_step"]
    assert recorder.per_epoch[-1]["train_function"] == first["train_function"]


def test_evaluate_does_not_retrace(small_digits):
    _, _, x_val, y_val = small_digits
    model = CountingModel(_classifier())
    model.compile(optimizer="adam", method="pat",
                  attack=ak.PGDAttack(EPS, num_steps=2, seed=0),
                  eval_attack=ak.PGDAttack(EPS, num_steps=2, seed=1))
    model.evaluate(x_val, y_val, batch_size=32, verbose=0)
    traces = model.test_traces
    functions = _tracing_count(model.test_function)
    assert 1 <= traces <= 2
    for _ in range(3):
        model.evaluate(x_val, y_val, batch_size=32, verbose=0)
    assert model.test_traces == traces
    assert _tracing_count(model.test_function) == functions


class CountingPGD(ak.PGDAttack):
    calls = 0

    def __call__(self, model, x, y):
        type(self).calls += 1
        return super().__call__(model, x, y)


class CountingFGSM(ak.FGSMAttack):
    calls = 0

    def __call__(self, model, x, y):
        type(self).calls += 1
        return super().__call__(model, x, y)


class CountingTRADES(ak.TRADESAttack):
    calls = 0

    def __call__(self, model, x, y):
        type(self).calls += 1
        return super().__call__(model, x, y)


def _counting_apgd():
    # The registry's apgd-ce: a KeyError (a failure, not a skip) if it leaves.
    base = attacks.ATTACKS["apgd-ce"]
    assert hasattr(base, "_round"), "APGD's traced round function has another name now"

    class CountingAPGD(base):
        calls = 0

        def _round(self, *args, **kwargs):  # traced once per compiled round function
            type(self).calls += 1
            return super()._round(*args, **kwargs)

    return CountingAPGD


@pytest.mark.parametrize("kind, jit_compile", [
    ("pgd", False), ("pgd", True), ("fgsm", False), ("trades", False), ("apgd-ce", False)])
def test_perturb_traces_once_per_model(digits, kind, jit_compile):
    _, _, x_test, y_test = digits
    x, y = x_test[:20], y_test[:20]
    if kind == "apgd-ce":
        cls = _counting_apgd()
        attack = cls(EPS, num_steps=3, seed=0)
    else:
        cls = {"pgd": CountingPGD, "fgsm": CountingFGSM, "trades": CountingTRADES}[kind]
        attack = cls(EPS, seed=0) if kind == "fgsm" else cls(EPS, num_steps=2, seed=0)
    cls.calls = 0
    model_a, model_b = _classifier(0), _classifier(1)
    # Batches of 16 and 4, then 10 and 10: one trace for model_a (under XLA
    # one compilation per batch size, but still one trace).
    attack.perturb(model_a, x, y, batch_size=16, jit_compile=jit_compile)
    x_adv = attack.perturb(model_a, x, y, batch_size=10, jit_compile=jit_compile)
    assert cls.calls == 1
    assert x_adv.shape == x.shape
    # A second model is a second trace, and the first stays cached.
    attack.perturb(model_b, x[:8], y[:8], batch_size=8, jit_compile=jit_compile)
    attack.perturb(model_a, x[:4], y[:4], batch_size=8, jit_compile=jit_compile)
    assert cls.calls == 2


def _dataset_nodes(dataset):
    graph = tf.compat.v1.GraphDef()
    graph.ParseFromString(dataset._as_serialized_graph().numpy())
    return {node.name: node for node in graph.node}


def _sink_op(nodes):
    """The op of the dataset node no other node consumes (the pipeline's end)."""
    datasets = [n for n in nodes.values() if "Dataset" in n.op]
    consumed = {name.lstrip("^").split(":")[0] for n in datasets for name in n.input}
    sinks = [n for n in datasets if n.name not in consumed]
    assert len(sinks) == 1, [n.op for n in sinks]
    return sinks[0]


@pytest.mark.parametrize("options", [
    {},
    {"shuffle": True, "augment": "crop"},
    {"shuffle": True, "repeat": True, "drop_remainder": True, "augment": "crop_flip"},
])
def test_pipeline_ends_in_autotuned_prefetch(options):
    x = np.random.default_rng(0).random((40, 8, 8, 1)).astype("float32")
    y = np.arange(40, dtype="int32") % 10
    dataset = make_pipeline(tf.data.Dataset.from_tensor_slices((x, y)), 16, **options)
    nodes = _dataset_nodes(dataset)
    sink = _sink_op(nodes)
    assert sink.op == "PrefetchDataset"
    # Its buffer size is AUTOTUNE (-1), so tf.data sizes it to keep the model fed.
    buffer = nodes[sink.input[1].split(":")[0]]
    assert buffer.op == "Const"
    assert tf.make_ndarray(buffer.attr["value"].tensor) == tf.data.AUTOTUNE
    ops = {node.op for node in nodes.values()}
    assert any(op.startswith("CacheDataset") for op in ops)


def test_pipeline_cache_can_be_turned_off():
    x = np.zeros((8, 8, 8, 1), "float32")
    y = np.zeros((8,), "int32")
    dataset = make_pipeline(tf.data.Dataset.from_tensor_slices((x, y)), 4, cache=False)
    ops = {node.op for node in _dataset_nodes(dataset).values()}
    assert "PrefetchDataset" in ops
    assert not any(op.startswith("CacheDataset") for op in ops)
