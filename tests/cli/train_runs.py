"""Shared by the command-line tests: tiny runs of atalp_keras.cli.train (and
evaluate.py) in-process, and the files they train on."""

import gzip
import json
import os
import socket
import struct
import sys

import keras
import numpy as np
from absl import flags

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

import evaluate  # noqa: E402
from atalp_keras.cli import flagfiles, train  # noqa: E402

CONFIGS = sorted(f for f in os.listdir(os.path.join(REPO, "configs"))
                 if f.endswith(".flags") and not f.endswith("_eval.flags"))
EVAL_CONFIGS = sorted(f for f in os.listdir(os.path.join(REPO, "configs"))
                      if f.endswith("_eval.flags"))
TINY = ["--tiny_widths=4,8,8,16", "--verbose=0"]


# ---------------------------------------------------------------- helpers


def parse(module, argv):
    fv = flags.FlagValues()
    module.define_flags(fv)
    # --flagfile as the commands read it (includes relative to their file).
    fv(flagfiles.expand_argv([f"{module.__name__.rsplit('.', 1)[-1]}.py"] + list(argv)))
    return fv


def run_train(argv):
    """train.py's main on ``argv``; returns the metrics dict."""
    keras.backend.clear_session()
    return train.run(["train.py"], parse(train, argv))


def run_evaluate(argv):
    return evaluate.run(["evaluate.py"], parse(evaluate, argv))


def env():
    return dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2",
                PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))


def script(name):
    return [sys.executable, os.path.join(REPO, name)]


def read_json(path):
    with open(path) as handle:
        return json.load(handle)


def write_image_folder(root, classes=3, per_class=6, size=(12, 10), channels=3,
                       seed=0):
    """``root/<class>/<i>.png`` with random pixels; returns ``root``."""
    rng = np.random.default_rng(seed)
    for c in range(classes):
        os.makedirs(os.path.join(root, f"class_{c}"), exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, size + (channels,), dtype=np.uint8)
            keras.utils.save_img(os.path.join(root, f"class_{c}", f"{i}.png"),
                                 pixels, scale=False)
    return str(root)


def write_idx(root, num_train=24, num_test=12, size=8, seed=0):
    """MNIST-format gzipped IDX files (magic 0x803 images, 0x801 labels)."""
    rng = np.random.default_rng(seed)
    os.makedirs(root, exist_ok=True)
    for prefix, n in (("train", num_train), ("t10k", num_test)):
        images = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
        labels = (np.arange(n) % 4).astype(np.uint8)
        with gzip.open(os.path.join(root, f"{prefix}-images-idx3-ubyte.gz"),
                       "wb") as handle:
            handle.write(struct.pack(">IIII", 0x803, n, size, size))
            handle.write(images.tobytes())
        with gzip.open(os.path.join(root, f"{prefix}-labels-idx1-ubyte.gz"),
                       "wb") as handle:
            handle.write(struct.pack(">II", 0x801, n))
            handle.write(labels.tobytes())
    return str(root)


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def quick(tmp_path, name="run", *extra):
    """Flags of a one-epoch digits run writing under ``tmp_path``."""
    return TINY + [
        "--dataset=digits", "--max_train_examples=64", "--max_test_examples=32",
        "--epochs=1", "--batch_size=32", "--num_steps=1", "--eval_pgd_steps=1",
        "--eps=0.2", f"--model_dir={tmp_path / name}",
        f"--export_dir={tmp_path / 'exports'}", *extra]
