"""Tests of atalp_keras.data: every source, the pipeline and the array checks.

All data is made here, in tmp folders: PNG/BMP class folders, gzipped IDX
files, and real (tiny) TFDS datasets prepared offline.
"""

import gzip
import os
import struct

import keras
import numpy as np
import pytest
import tensorflow as tf

from atalp_keras import data
from atalp_keras.data import load_dataset, make_pipeline, to_numpy, validate_arrays


def _save(path, pixels):
    """Writes uint8 pixels (H, W, C) losslessly (PNG/BMP by extension)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    keras.utils.save_img(path, np.asarray(pixels, np.uint8), scale=False)


def _constant(value, size=(5, 6), channels=3):
    return np.full(size + (channels,), value, np.uint8)


# ----------------------------------------------------------------- digits


def test_digits_is_the_documented_stratified_split():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    info = load_dataset("digits")
    assert (info.name, info.num_classes, info.input_shape) == ("digits", 10, (8, 8, 1))
    assert (info.num_train, info.num_test) == (1437, 360)
    assert info.class_names == [str(i) for i in range(10)]
    x_test, y_test = to_numpy(info.test)
    assert x_test.dtype == np.float32 and y_test.dtype == np.int32
    raw = load_digits()
    _, x_ref, _, y_ref = train_test_split(
        raw.images[..., None] / 16.0, raw.target, test_size=0.2,
        stratify=raw.target, random_state=0)
    np.testing.assert_array_equal(x_test, x_ref.astype(np.float32))
    np.testing.assert_array_equal(y_test, y_ref)
    assert x_test.min() == 0.0 and x_test.max() == 1.0
    # Stratified: every class has 36 (+-1) of the 360 test digits.
    assert np.all(np.abs(np.bincount(y_test, minlength=10) - 36) <= 1)
    x_train, _ = to_numpy(info.train)
    assert len(x_train) == 1437


def test_digits_seed_fraction_and_resize():
    a = to_numpy(load_dataset("digits", seed=1, test_fraction=0.5).test)[1]
    b = to_numpy(load_dataset("digits", seed=2, test_fraction=0.5).test)[1]
    assert len(a) == 899 and not np.array_equal(a, b)
    info = load_dataset("digits", image_size=16)
    x, _ = to_numpy(info.train, limit=5)
    assert info.input_shape == (16, 16, 1) and x.shape == (5, 16, 16, 1)
    assert 0.0 <= x.min() and x.max() <= 1.0


@pytest.mark.parametrize("spec, words", [
    ("foo:x", ["Unknown dataset source 'foo:x'", "digits, tfds:<name>[:split]",
               "Received: dataset='foo:x'"]),
    ("mnist", ["Unknown dataset source 'mnist'"]),
    ("tfds:", ["needs a name", "Received: dataset='tfds:'"]),
    ("folder:", ["needs a path"]),
])
def test_unknown_or_incomplete_spec(spec, words):
    with pytest.raises(ValueError) as error:
        load_dataset(spec)
    for word in words:
        assert word in str(error.value)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"test_fraction=1\.5"):
        load_dataset("digits", test_fraction=1.5)
    with pytest.raises(ValueError, match=r"image_size=\(8, 0\)"):
        load_dataset("digits", image_size=(8, 0))


# ----------------------------------------------------------------- folders


def test_folder_with_class_subfolders_is_split_stratified(tmp_path):
    # 3 classes x 4 images; every image one constant value that encodes it.
    for c, name in enumerate(["zebra", "ant", "cat"]):
        for i in range(4):
            _save(str(tmp_path / name / f"{i}.png"),
                  _constant(10 * c + i + 1) + np.uint8([0, 100, 200]))
    info = load_dataset(f"folder:{tmp_path}", test_fraction=0.25)
    assert info.class_names == ["ant", "cat", "zebra"]  # sorted
    assert (info.num_classes, info.input_shape) == (3, (5, 6, 3))
    assert (info.num_train, info.num_test) == (9, 3)
    x_train, y_train = to_numpy(info.train)
    x_test, y_test = to_numpy(info.test)
    assert np.bincount(y_test).tolist() == [1, 1, 1]
    assert np.bincount(y_train).tolist() == [3, 3, 3]
    values = {}
    for x, y in zip(np.concatenate([x_train, x_test]),
                    np.concatenate([y_train, y_test])):
        assert np.all(x == x[0, 0])  # colour kept: channels differ
        values[int(round(x[0, 0, 0] * 255))] = int(y)
        assert round(x[0, 0, 2] * 255) == round(x[0, 0, 0] * 255) + 200
    original_class = {"zebra": 0, "ant": 1, "cat": 2}
    expected = {10 * c + i + 1: info.class_names.index(name)
                for name, c in original_class.items() for i in range(4)}
    assert values == expected  # every image once, under its own class


def test_folder_train_val_layout_grayscale_exact_pixels(tmp_path):
    pattern = np.arange(20, dtype=np.uint8).reshape(4, 5, 1) * 12
    for split, count in (("train", 3), ("val", 2)):
        for name in ("a", "b"):
            for i in range(count):
                _save(str(tmp_path / split / name / f"{i}.png"), pattern + i)
    # A BMP decodes too (mixed formats in one folder).
    _save(str(tmp_path / "train" / "b" / "x.bmp"), np.repeat(pattern, 3, -1))
    info = load_dataset(f"folder:{tmp_path}")
    assert info.input_shape == (4, 5, 1)  # all gray -> one channel
    assert (info.num_train, info.num_test) == (7, 4)
    x_train, y_train = to_numpy(info.train)
    assert y_train.tolist() == [0, 0, 0, 1, 1, 1, 1]
    np.testing.assert_array_equal(x_train[1], (pattern + 1) / np.float32(255))
    np.testing.assert_array_equal(x_train[3], pattern / np.float32(255))


def test_folder_sizes_and_channels(tmp_path):
    _save(str(tmp_path / "a" / "0.png"), _constant(7, (4, 4), 1))
    _save(str(tmp_path / "a" / "1.png"), _constant(8, (6, 6), 1))
    _save(str(tmp_path / "b" / "0.png"), _constant(9, (4, 4), 3) + [0, 1, 2])
    _save(str(tmp_path / "b" / "1.png"), _constant(9, (4, 4), 3))
    with pytest.raises(ValueError) as error:
        load_dataset(f"folder:{tmp_path}", test_fraction=0.5)
    assert "differ in size" in str(error.value)
    assert "image_size=None" in str(error.value)
    info = load_dataset(f"folder:{tmp_path}", image_size=(3, 2), test_fraction=0.5)
    assert info.input_shape == (3, 2, 3)  # one colour image -> 3 channels
    x, _ = to_numpy(info.train)
    assert x.shape == (2, 3, 2, 3)


def test_folder_errors_name_the_problem(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(ValueError, match="does not exist") as error:
        load_dataset(f"folder:{missing}")
    assert f"dataset='folder:{missing}'" in str(error.value)

    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(ValueError, match="is not a directory"):
        load_dataset(f"folder:{a_file}")

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="No class subfolders"):
        load_dataset(f"folder:{empty}")

    root = tmp_path / "root"
    _save(str(root / "cats" / "0.png"), _constant(1))
    (root / "dogs").mkdir()
    (root / "dogs" / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match="Class folder 'dogs'.*has no images"):
        load_dataset(f"folder:{root}")

    split = tmp_path / "split"
    for name in ("cats", "dogs"):
        _save(str(split / "train" / name / "0.png"), _constant(1))
    _save(str(split / "test" / "cats" / "0.png"), _constant(1))
    with pytest.raises(ValueError, match=r"\['dogs'\] are in 'train' but not in 'test'"):
        load_dataset(f"folder:{split}")


# ----------------------------------------------------------------- IDX


def _write_idx(path, magic, array, compress):
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + np.asarray(array, np.uint8).tobytes()
    with (gzip.open if compress else open)(path, "wb") as handle:
        handle.write(payload)


@pytest.fixture
def idx_dir(tmp_path):
    rng = np.random.RandomState(0)
    x_train = rng.randint(0, 256, (10, 4, 5)).astype(np.uint8)
    x_test = rng.randint(0, 256, (4, 4, 5)).astype(np.uint8)
    y_train = np.arange(10, dtype=np.uint8) % 3
    y_test = np.array([2, 1, 0, 1], np.uint8)
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", 0x803, x_train, True)
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", 0x801, y_train, True)
    _write_idx(tmp_path / "test-images-idx3-ubyte", 0x803, x_test, False)
    _write_idx(tmp_path / "test-labels-idx1-ubyte", 0x801, y_test, False)
    return tmp_path, (x_train, y_train, x_test, y_test)


def test_idx_gzipped_and_plain(idx_dir):
    path, (x_train, y_train, x_test, y_test) = idx_dir
    info = load_dataset(f"idx:{path}")
    assert (info.num_train, info.num_test, info.num_classes) == (10, 4, 3)
    assert info.input_shape == (4, 5, 1)
    x, y = to_numpy(info.train)
    np.testing.assert_array_equal(x[..., 0], x_train / np.float32(255))
    np.testing.assert_array_equal(y, y_train)
    x, y = to_numpy(info.test)
    np.testing.assert_array_equal(x[..., 0], x_test / np.float32(255))
    assert y.tolist() == [2, 1, 0, 1] and y.dtype == np.int32


def test_idx_errors(idx_dir):
    path, (x_train, y_train, _, _) = idx_dir
    # Labels written where images belong: wrong magic, received vs expected.
    _write_idx(path / "train-images-idx3-ubyte.gz", 0x801, y_train, True)
    with pytest.raises(ValueError) as error:
        load_dataset(f"idx:{path}")
    assert "Received: 0x00000801, expected: 0x00000803" in str(error.value)

    _write_idx(path / "train-images-idx3-ubyte.gz", 0x803, x_train[:7], True)
    with pytest.raises(ValueError, match="7 images .* but 10 labels"):
        load_dataset(f"idx:{path}")

    _write_idx(path / "train-images-idx3-ubyte.gz", 0x803, x_train, True)
    os.remove(path / "test-labels-idx1-ubyte")
    with pytest.raises(ValueError) as error:
        load_dataset(f"idx:{path}")
    message = str(error.value)
    assert "t10k-labels-idx1-ubyte.gz" in message
    assert "test-labels-idx1-ubyte" in message

    with pytest.raises(ValueError, match="does not exist"):
        load_dataset(f"idx:{path / 'missing'}")


# ----------------------------------------------------------------- TFDS


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    import tensorflow_datasets as tfds

    class SupervisedBuilder(tfds.dataset_builders.AdhocBuilder,
                            skip_registration=True):
        """An adhoc builder that declares (image, label) supervised keys."""

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self, features=self._feature_spec,
                supervised_keys=("image", "label"), disable_shuffling=True)

    root = str(tmp_path_factory.mktemp("tfds"))
    gray = (np.arange(18 * 36, dtype=np.int64) % 256).astype(np.uint8)
    gray = gray.reshape(18, 6, 6, 1)
    labels = np.arange(18) % 3

    def split(x, y):
        return tf.data.Dataset.from_tensor_slices({"image": x, "label": y})

    builder = SupervisedBuilder(
        name="atalp_tiny_gray", version="1.0.0", data_dir=root,
        split_datasets={"train": split(gray[:12], labels[:12]),
                        "test": split(gray[12:], labels[12:])},
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(6, 6, 1)),
            "label": tfds.features.ClassLabel(names=["x", "y", "z"]),
        }),
        disable_shuffling=True)
    builder.download_and_prepare()

    rgb = np.random.RandomState(1).randint(0, 256, (20, 5, 5, 3)).astype(np.uint8)
    tfds.dataset_builders.store_as_tfds_dataset(
        name="atalp_tiny_rgb", version="1.0.0", data_dir=root,
        split_datasets={"train": split(rgb, np.arange(20) % 4)},
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(5, 5, 3)),
            "label": tfds.features.ClassLabel(num_classes=4),
        }),
        disable_shuffling=True)
    return root, gray, labels, rgb


def test_tfds_train_and_test_splits(tfds_dir):
    root, gray, labels, _ = tfds_dir
    info = load_dataset("tfds:atalp_tiny_gray", data_dir=root)
    assert (info.name, info.num_classes, info.class_names) == (
        "atalp_tiny_gray", 3, ["x", "y", "z"])
    assert (info.num_train, info.num_test, info.input_shape) == (12, 6, (6, 6, 1))
    x, y = to_numpy(info.test)
    np.testing.assert_array_equal(x, gray[12:] / np.float32(255))
    np.testing.assert_array_equal(y, labels[12:])
    assert y.dtype == np.int32 and x.dtype == np.float32

    info = load_dataset("tfds:atalp_tiny_gray:1.0.0:test[:2]", data_dir=root,
                        image_size=(3, 3))
    assert (info.num_train, info.num_test, info.input_shape) == (12, 2, (3, 3, 1))
    x, _ = to_numpy(info.test)
    assert x.shape == (2, 3, 3, 1)


def test_tfds_train_only_is_split_by_fraction(tfds_dir):
    root, _, _, rgb = tfds_dir
    info = load_dataset("tfds:atalp_tiny_rgb", data_dir=root, test_fraction=0.25)
    assert (info.num_train, info.num_test, info.num_classes) == (15, 5, 4)
    assert info.input_shape == (5, 5, 3)
    x, y = to_numpy(info.test)
    np.testing.assert_array_equal(x, rgb[15:] / np.float32(255))
    assert y.tolist() == [3, 0, 1, 2, 3]
    with pytest.raises(ValueError, match="overlap the training split"):
        load_dataset("tfds:atalp_tiny_rgb:train[50%:]", data_dir=root)


def test_tfds_errors_say_prepare_in_data_dir(tfds_dir, tmp_path):
    root = tfds_dir[0]
    with pytest.raises(ValueError) as error:
        load_dataset("tfds:atalp_no_such_set", data_dir=root)
    message = str(error.value)
    assert "'atalp_no_such_set' was not found" in message
    assert "--data_dir" in message and "dataset='tfds:atalp_no_such_set'" in message
    # A registered dataset that was never prepared must not try the network.
    with pytest.raises(ValueError, match="'mnist' is not prepared") as error:
        load_dataset("tfds:mnist", data_dir=str(tmp_path))
    assert "no network" in str(error.value)
    with pytest.raises(ValueError, match="Invalid split"):
        load_dataset("tfds:atalp_tiny_gray:bogus", data_dir=root)


# ----------------------------------------------------------------- pipeline


def _indexed(n=10, size=(4, 4, 1)):
    """Images whose pixels all equal their index / 100; label = index."""
    x = np.tile(np.arange(n, dtype=np.float32)[:, None, None, None] / 100,
                (1,) + size)
    return tf.data.Dataset.from_tensor_slices((x, np.arange(n, dtype=np.int32)))


def test_pipeline_batches_shuffles_and_repeats():
    ds = make_pipeline(_indexed(10), 4)
    assert [len(y) for _, y in ds] == [4, 4, 2]
    assert np.concatenate([y for _, y in ds]).tolist() == list(range(10))
    ds = make_pipeline(_indexed(10), 4, drop_remainder=True)
    assert [len(y) for _, y in ds] == [4, 4]

    ds = make_pipeline(_indexed(10), 10, shuffle=True, seed=3)
    epoch1 = next(iter(ds))[1].numpy()
    epoch2 = next(iter(ds))[1].numpy()
    again = next(iter(make_pipeline(_indexed(10), 10, shuffle=True, seed=3)))[1]
    assert sorted(epoch1.tolist()) == list(range(10))
    assert epoch1.tolist() != epoch2.tolist()  # reshuffled every epoch
    np.testing.assert_array_equal(epoch1, again.numpy())  # seeded

    ds = make_pipeline(_indexed(10), 4, repeat=True)
    assert len(list(ds.take(7))) == 7


def test_crop_augmentation_shifts_each_image_by_its_own_offset():
    x = np.ones((64, 8, 8, 1), np.float32)
    ds = tf.data.Dataset.from_tensor_slices((x, np.zeros(64, np.int32)))
    batch = next(iter(make_pipeline(ds, 64, augment="crop", pad=2, seed=0)))[0]
    batch = batch.numpy()
    assert batch.shape == (64, 8, 8, 1)
    # Each image is the ones-square shifted by <= 2 px, zeros filling in.
    assert set(np.unique(batch)) <= {0.0, 1.0}
    rows = batch[:, :, :, 0].max(axis=2).sum(axis=1)  # rows still covered
    assert rows.min() >= 6 and np.any(batch[:, :, :, 0].sum(axis=(1, 2)) < 64)
    assert len({image.tobytes() for image in batch}) > 5  # not one batch crop


def test_flip_only_in_crop_flip():
    asymmetric = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1) / 16
    x = np.repeat(asymmetric, 32, axis=0)
    ds = tf.data.Dataset.from_tensor_slices((x, np.zeros(32, np.int32)))
    crop = next(iter(make_pipeline(ds, 32, augment="crop", pad=0)))[0].numpy()
    np.testing.assert_array_equal(crop, x)  # pad 0 and no flip: identity
    flipped = next(iter(make_pipeline(ds, 32, augment="crop_flip", pad=0, seed=1)))[0]
    flipped = flipped.numpy()
    is_flipped = [np.array_equal(f, x[0][:, ::-1]) for f in flipped]
    is_same = [np.array_equal(f, x[0]) for f in flipped]
    assert all(a or b for a, b in zip(is_flipped, is_same))
    assert 0 < sum(is_flipped) < 32


def test_pipeline_argument_errors():
    with pytest.raises(ValueError, match="augment='flip'"):
        make_pipeline(_indexed(), 4, augment="flip")
    with pytest.raises(ValueError, match="batch_size=0"):
        make_pipeline(_indexed(), 0)
    with pytest.raises(ValueError, match="pad=-1"):
        data.RandomPadCrop(pad=-1)


def test_to_numpy_limit_and_empty():
    x, y = to_numpy(_indexed(10), limit=3)
    assert x.shape == (3, 4, 4, 1) and y.tolist() == [0, 1, 2]
    x, y = to_numpy(_indexed(10).take(0))
    assert x.shape == (0, 4, 4, 1) and y.shape == (0,)


# ----------------------------------------------------------------- validate


def test_validate_arrays_accepts_and_converts():
    x, y = validate_arrays(np.zeros((2, 3, 3, 1)), [0.0, 2.0], num_classes=3,
                           input_shape=(3, 3, 1))
    assert x.dtype == np.float32 and y.dtype == np.int32 and y.tolist() == [0, 2]


@pytest.mark.parametrize("x, y, kwargs, words", [
    (np.zeros((2, 3, 3)), [0, 1], {}, ["rank 4", "x[..., None]", "x.shape=(2, 3, 3)"]),
    (np.zeros((2, 3, 3, 1)), [0, 1], {"input_shape": (8, 8, 1)},
     ["(N, 8, 8, 1)", "x.shape=(2, 3, 3, 1)"]),
    (np.array([np.nan, np.inf, 0.5, 0.1]).reshape(1, 2, 2, 1), [0], {},
     ["2 NaN or infinite"]),
    (np.full((1, 2, 2, 1), 255.0), [0], {}, ["min=255", "max=255", "divide by 255"]),
    (np.full((1, 2, 2, 1), -0.5), [0], {}, ["min=-0.5"]),
    (np.zeros((2, 2, 2, 1)), [0, 10], {"num_classes": 10}, ["[0, 10)", "label of 10"]),
    (np.zeros((2, 2, 2, 1)), [0, -1], {}, ["label of -1"]),
    (np.zeros((2, 2, 2, 1)), [0, 1.5], {}, ["non-integer label: 1.5"]),
    (np.zeros((2, 2, 2, 1)), np.eye(2), {}, ["One-hot", "y.shape=(2, 2)"]),
    (np.zeros((2, 2, 2, 1)), [0], {}, ["2 images and 1 labels"]),
])
def test_validate_arrays_errors(x, y, kwargs, words):
    with pytest.raises(ValueError) as error:
        validate_arrays(x, y, **kwargs)
    for word in words:
        assert word in str(error.value)
