"""The models and data each benchmark workload trains and attacks."""

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


def small_cnn(input_shape=(8, 8, 1), num_classes=10):
    """The digits CNN of tests/conftest.py (3.4k weights), with named conv layers
    so the attention term has two stages to pair."""
    import keras

    inputs = keras.Input(input_shape, name="images")
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dense(32, activation="relu", name="dense")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="small_cnn")


def build_classifier(cfg):
    """Returns ``(classifier, stage_layers)`` for ``cfg["model"]`` (None: the
    backbone's own stage ends)."""
    import keras

    from atalp_keras.backbones import build_backbone

    keras.utils.set_random_seed(cfg["seed"])
    shape = tuple(cfg["input_shape"])
    name = cfg["model"]
    if name == "small_cnn":
        return small_cnn(shape, 10), ["conv1", "conv2"]
    backbone = {"tiny_resnet": "tiny", "tiny_resnet28": "tiny", "fmnist": "fmnist",
                "resnet18": "resnet18"}[name]
    return build_backbone(backbone, shape, 10), None


def _arrays(cfg):
    """``(train_source, x_train, y_train, x_test, y_test)`` of the workload's data."""
    import numpy as np
    import tensorflow as tf

    from atalp_keras.data import load_dataset, to_numpy

    if cfg["data"] in ("digits", "fashion_mnist"):
        spec = "digits" if cfg["data"] == "digits" else f"idx:{FASHION_MNIST_DIR}"
        info = load_dataset(spec, seed=cfg["seed"])
        x_train, y_train = to_numpy(info.train)
        x_test, y_test = to_numpy(info.test)
        return info.train, x_train, y_train, x_test, y_test
    # Uniform random images with random labels: speed only.
    rng = np.random.default_rng(cfg["seed"])
    n = cfg.get("random_images") or 4 * cfg["batch_size"]
    x_train = rng.random((n,) + tuple(cfg["input_shape"]), dtype=np.float32)
    y_train = rng.integers(0, 10, n).astype("int32")
    n_test = max(cfg["batch_size"], min(n, cfg.get("eval_points", 0)))
    x_test = rng.random((n_test,) + tuple(cfg["input_shape"]), dtype=np.float32)
    y_test = rng.integers(0, 10, n_test).astype("int32")
    train = tf.data.Dataset.from_tensor_slices((x_train, y_train))
    return train, x_train, y_train, x_test, y_test


def load_data(cfg):
    """``(train_ds, x_train, y_train, x_test, y_test, images_per_epoch)``.

    ``train_ds`` is the package's pipeline (shuffled, batched, cached,
    prefetched); it repeats when ``steps_per_epoch`` is set.
    """
    from atalp_keras.data import make_pipeline

    train, x_train, y_train, x_test, y_test = _arrays(cfg)
    batch, steps = cfg["batch_size"], cfg["steps_per_epoch"]
    repeat = steps is not None
    train_ds = make_pipeline(train, batch, shuffle=True, seed=cfg["seed"], repeat=repeat)
    images = steps * batch if repeat else len(x_train)
    return train_ds, x_train, y_train, x_test, y_test, images


def epoch_dataset(cfg, train_ds):
    """The part of ``train_ds`` that makes one epoch (all of it unless repeated)."""
    return train_ds.take(cfg["steps_per_epoch"]) if cfg["steps_per_epoch"] else train_ds
