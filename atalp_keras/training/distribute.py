"""Where a run executes: the tf.distribute strategy, the multi-worker
cluster (from ``TF_CONFIG``) and, for testing without GPUs, logical CPU
devices. The training code's only use of ``tf.distribute``.

Under a strategy ``batch_size`` is the global batch; each of the ``R``
replicas gets ``batch_size / R`` examples, and the loss scaling of
``ATALPModel`` keeps gradients equal to the single-device ones. Only the chief
writes into ``model_dir``; other multi-worker tasks write into
``model_dir/workers/<task_type>_<index>/``.
"""

import dataclasses
import json
import numbers
import os

import keras
import tensorflow as tf

from atalp_keras.errors import UsageError


@dataclasses.dataclass
class Cluster:
    """The strategy of a run and this process's place in it."""

    strategy: tf.distribute.Strategy
    is_chief: bool
    task: str  # "chief", "worker_1", ... ("chief" when not multi-worker)
    replicas: int
    cpu_only: bool

    @property
    def multi_worker(self):
        return isinstance(self.strategy,
                          tf.distribute.MultiWorkerMirroredStrategy)


def configure_cpu_devices(count):
    """Splits the CPU into ``count`` logical devices (``/cpu:0`` ...).

    Lets ``mirrored`` run with several replicas on a machine without GPUs, for
    testing. Must run before TensorFlow executes its first op.

    Raises:
        UsageError: If ``count < 1`` or TensorFlow is already initialised.
    """
    if not isinstance(count, numbers.Integral) or isinstance(count, bool) \
            or count < 1:
        raise UsageError(f"The number of CPU devices must be an integer >= 1."
                         f" Received: {count!r}")
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError as error:
        raise UsageError(
            f"Cannot split the CPU into {count} devices after TensorFlow has "
            f"started ({error}); set it before any other TensorFlow call."
        ) from None


def read_tf_config():
    """``(cluster, task_type, index)`` from the ``TF_CONFIG`` variable."""
    text = os.environ.get("TF_CONFIG", "")
    if not text.strip():
        raise UsageError(
            "distribution='multi_worker' needs the TF_CONFIG environment "
            "variable, e.g. {\"cluster\": {\"worker\": [\"host1:12345\", "
            "\"host2:12345\"]}, \"task\": {\"type\": \"worker\", \"index\": 0}}."
            " Received: TF_CONFIG unset")
    try:
        tf_config = json.loads(text)
        cluster = tf_config["cluster"]
        task = tf_config["task"]
        task_type, index = task["type"], int(task["index"])
        if task_type not in cluster or not 0 <= index < len(
                cluster[task_type]):
            raise KeyError(f"task {task_type}:{index} not in the cluster")
    except (ValueError, KeyError, TypeError) as error:
        raise UsageError(
            f"TF_CONFIG must be JSON with 'cluster' (task type -> list of "
            f"host:port) and 'task' ({{'type', 'index'}}) ({error}). Received:"
            f" TF_CONFIG={text!r}") from None
    return cluster, task_type, index


def make_cluster(distribution, devices=()):
    """The `Cluster` for a ``distribution`` setting (see `TrainConfig`).

    A multi-worker strategy must exist before other TensorFlow ops run.
    """
    gpus = tf.config.list_physical_devices("GPU")
    is_chief, task = True, "chief"
    if distribution == "default":
        strategy = tf.distribute.get_strategy()
    elif distribution == "one_device":
        device = devices[0] if devices else ("/gpu:0" if gpus else "/cpu:0")
        strategy = tf.distribute.OneDeviceStrategy(device)
    elif distribution == "mirrored":
        devices = list(devices)
        if not devices and not gpus:
            # No GPU: all logical CPUs (one unless configure_cpu_devices ran).
            devices = [d.name for d in tf.config.list_logical_devices("CPU")]
        strategy = tf.distribute.MirroredStrategy(devices or None)
    else:
        cluster, task_type, index = read_tf_config()
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        is_chief = task_type == "chief" or (
            task_type == "worker" and index == 0 and "chief" not in cluster)
        task = "chief" if is_chief else f"{task_type}_{index}"
    if distribution == "default":
        cpu_only = not gpus
    else:
        cpu_only = all("GPU" not in d.upper()
                       for d in strategy.extended.worker_devices)
    return Cluster(strategy, is_chief, task, strategy.num_replicas_in_sync,
                   cpu_only)


def shard_by_example(dataset):
    """In-memory sources have no files to shard: shard by example (every
    worker reads the same seeded order and keeps its share)."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA)
    return dataset.with_options(options)


def adapt_to_multi_worker(model):
    """Works around Keras 3.15's ``fit`` under MultiWorkerMirroredStrategy
    (keras-team/keras#20585), for this model only.

    Keras reduces each step's logs across workers with
    ``strategy.reduce("MEAN", v, axis=0)``, which fails on scalars, and its
    pre-``fit`` symbolic build reduces a whole data batch, which fails on an
    ``(x, y)`` tuple. So the steps return shape-``(1,)`` logs (reduced to the
    cross-worker mean scalar), and the model is created outside the strategy
    scope (so Keras skips the symbolic build; it is already built) while
    ``compile``/``fit``/``evaluate`` run inside it. The optimizer is built
    here, in cross-replica context, because no symbolic build does it.
    """
    train_step, test_step = model.train_step, model.test_step

    def as_vectors(logs):
        return {key: keras.ops.reshape(value, (1,))
                for key, value in logs.items()}

    model.train_step = lambda data: as_vectors(train_step(data))
    model.test_step = lambda data: as_vectors(test_step(data))
    model.optimizer.build(model.classifier.trainable_variables)
