"""Tests of the ``folder:`` source: class subfolders of image files."""

import numpy as np
import pytest

from atalp_keras.data import load_dataset, to_numpy
from atalp_keras.errors import UsageError
from data.sources.files import constant_image as _constant
from data.sources.files import save_image as _save


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


@pytest.mark.parametrize("layout", ["flat", "train_test"])
def test_folder_with_one_class_is_refused(tmp_path, layout):
    for i in range(4):
        if layout == "flat":
            _save(str(tmp_path / "cats" / f"{i}.png"), _constant(i))
        else:
            _save(str(tmp_path / "train" / "cats" / f"{i}.png"), _constant(i))
            _save(str(tmp_path / "test" / "cats" / f"{i}.png"), _constant(i))
    with pytest.raises(UsageError) as error:
        load_dataset(f"folder:{tmp_path}", test_fraction=0.5)
    message = str(error.value)
    assert "1 class subfolder (cats)" in message
    assert "at least 2 classes" in message and f"dataset='folder:{tmp_path}'" in message
    assert "\n" not in message
