"""Tests of the paper's analyses (atalp_keras.analysis, plots) and analyze.py."""

import json
import os
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import analyze  # noqa: E402
from atalp_keras import analysis, plots  # noqa: E402
from atalp_keras.attacks import PGDAttack  # noqa: E402
from atalp_keras.backbones import tiny_resnet  # noqa: E402
from atalp_keras.export import export_saved_model  # noqa: E402
from conftest import small_cnn  # noqa: E402

# Its own FlagValues: no clash with other entry points' flags in this process.
analyze.define_flags(flags.FlagValues())


def _train_tiny_resnet(digits, seed, epochs):
    x_train, y_train, _, _ = digits
    keras.utils.set_random_seed(seed)
    model = tiny_resnet((8, 8, 1), 10, widths=(4, 8, 8, 16))
    model.compile(keras.optimizers.Adam(1e-2),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x_train, y_train, epochs=epochs, batch_size=64, verbose=0)
    return model


@pytest.fixture(scope="module")
def resnet(digits):
    return _train_tiny_resnet(digits, seed=0, epochs=6)


@pytest.fixture(scope="module")
def model_files(resnet, digits, tmp_path_factory):
    """target.keras (the resnet), gray.keras (same arch, other seed),
    black.keras (another architecture) and a SavedModel of the target."""
    folder = tmp_path_factory.mktemp("models")
    paths = {"target": str(folder / "target.keras"), "gray": str(folder / "gray.keras"),
             "black": str(folder / "black.keras")}
    resnet.save(paths["target"])
    _train_tiny_resnet(digits, seed=1, epochs=2).save(paths["gray"])
    black = small_cnn(seed=2)
    black.compile(keras.optimizers.Adam(1e-2),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    black.fit(digits[0], digits[1], epochs=3, batch_size=64, verbose=0)
    black.save(paths["black"])
    paths["saved_model"] = export_saved_model(resnet, str(folder / "serving"))
    return paths


def _cross_entropy(logits, y):
    logits = np.asarray(logits, np.float64)
    logits = logits - logits.max(-1, keepdims=True)
    return np.log(np.exp(logits).sum(-1)) - logits[np.arange(len(y)), y]


# ----------------------------------------------------------------- attention


def test_attention_maps_unit_norm_then_max_one(resnet, digits):
    x = digits[2][:6]
    maps = analysis.attention_maps(resnet, x)
    assert [m.shape for m in maps] == [(6, 8, 8), (6, 4, 4), (6, 2, 2), (6, 2, 2)]
    for stage_maps in maps:
        norms = np.linalg.norm(stage_maps.reshape(6, -1), axis=1)
        np.testing.assert_allclose(norms, 1.0, atol=1e-5)
        assert stage_maps.min() >= 0.0
        up = analysis.upsample_to(stage_maps, (8, 8))
        assert up.shape == (6, 8, 8)
        np.testing.assert_allclose(up.reshape(6, -1).max(axis=1), 1.0, atol=1e-6)
        assert up.min() >= 0.0


def test_attention_maps_need_functional_model():
    class Subclassed(keras.Model):
        def call(self, x, training=False):
            return x

    with pytest.raises(ValueError, match=r"\.keras"):
        analysis.attention_maps(Subclassed(), np.zeros((1, 8, 8, 1), np.float32))


# ------------------------------------------------------- accuracy vs. k steps


def test_snapshot_equals_fresh_pgd(undefended_model, digits):
    x, y = digits[2][:64], digits[3][:64]
    snapshots = analysis.pgd_trajectory(undefended_model, x, y, eps=0.1, step_size=0.02,
                                        iterations=(1, 3, 8), random_start=False,
                                        batch_size=40)
    for k, x_adv in snapshots.items():
        fresh = PGDAttack(0.1, step_size=0.02, num_steps=k,
                          random_start=False).perturb(undefended_model, x, y)
        np.testing.assert_array_equal(x_adv, fresh)
    assert np.abs(snapshots[8] - x).max() <= 0.1 + 1e-6
    assert not np.array_equal(snapshots[1], snapshots[8])


def test_white_box_accuracy_falls_with_iterations(undefended_model, digits):
    x, y = digits[2][:200], digits[3][:200]
    iterations = (1, 2, 5, 10, 20)
    records = analysis.robust_accuracy_vs_iterations(
        undefended_model, x, y, [0.1], iterations=iterations, step_size=0.01, seed=3)
    assert [r["num_steps"] for r in records] == list(iterations)
    assert all(r["setting"] == "white" and r["n"] == 200 and r["eps"] == 0.1
               for r in records)
    accuracies = [r["accuracy"] for r in records]
    # No slack: from the same start, more small steps never helped the model here.
    assert all(a >= b for a, b in zip(accuracies, accuracies[1:])), accuracies
    assert accuracies[-1] < accuracies[0] - 0.2, accuracies
    json.dumps(records)

    # Restart 0 reuses the single-run start, and white-box restarts are judged
    # on the evaluated model, so more restarts can only lower accuracy.
    two = analysis.robust_accuracy_vs_iterations(
        undefended_model, x, y, [0.1], iterations=iterations, step_size=0.01, seed=3,
        restarts=2, batch_size=64)
    assert all(b["accuracy"] <= a["accuracy"] for a, b in zip(records, two))


def test_transfer_records_name_source(undefended_model, resnet, digits):
    x, y = digits[2][:50], digits[3][:50]
    records = analysis.robust_accuracy_vs_iterations(
        resnet, x, y, ["0.2"], iterations=(2, 4), step_size=0.05, source=undefended_model,
        target_name="resnet", source_name="black")
    assert {r["setting"] for r in records} == {"transfer"}
    assert {(r["source"], r["target"]) for r in records} == {("black", "resnet")}
    with pytest.raises(ValueError, match="0-255"):
        analysis.robust_accuracy_vs_iterations(resnet, x, y, [8], iterations=(2,))
    with pytest.raises(ValueError, match="increasing"):
        analysis.robust_accuracy_vs_iterations(resnet, x, y, [0.1], iterations=(5, 2))


# ----------------------------------------------------------------- landscape


def test_loss_landscape_centre_and_gradient_direction(undefended_model, digits):
    model = undefended_model
    x, y = digits[2][:4], digits[3][:4]
    a, b, z, (r1, r2) = analysis.loss_landscape(model, x, y, eps_max=0.2, seed=1,
                                                per_image=True, return_directions=True)
    assert z.shape == (4, 21, 21) and a[10] == 0.0 and b[10] == 0.0
    clean_ce = _cross_entropy(model(x, training=False), y)
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
    np.testing.assert_allclose(z[:, i, j], _cross_entropy(model(point, training=False), y),
                               rtol=1e-4)

    # Up the gradient sign the loss grows (on average over the positive side).
    assert z[:, 11:, 10].mean() > z[:, 10, 10].mean()
    _, _, z_mean = analysis.loss_landscape(model, x, y, eps_max=0.2, seed=1)
    np.testing.assert_allclose(z_mean, z.mean(axis=0), rtol=1e-6)


# ----------------------------------------------------------------- key regions


def _identity_and_pooled_classifier():
    """Stage ``identity`` is the image itself (Q = x^2 at 4x4); stage
    ``pooled`` is its 2x2 average pooling (Q = pool(x)^2 at 2x2)."""
    inputs = keras.Input((4, 4, 1))
    identity = keras.layers.Activation("linear", name="identity")(inputs)
    pooled = keras.layers.AveragePooling2D(2, name="pooled")(identity)
    logits = keras.layers.Dense(3)(keras.layers.Flatten()(pooled))
    return keras.Model(inputs, logits)


def test_key_region_activation_known_answer():
    classifier = _identity_and_pooled_classifier()
    images = np.zeros((2, 4, 4, 1), np.float32)
    images[0, :, :2] = 1.0     # left half white
    images[1, :2, :2] = 0.5    # top-left quarter grey
    masks = np.zeros((2, 4, 4), np.int64)
    masks[0, :, 1] = masks[0, :, 3] = 1
    masks[1, [0, 1, 2], [0, 1, 2]] = 1
    result = analysis.key_region_activation(classifier, images, masks,
                                            stage_layers=["identity", "pooled"])
    assert list(result) == ["identity", "pooled"]
    # identity: the max-1 map is 1 where the image is non-zero, else 0.
    #   image 0: column 1 -> 1, column 3 -> 0: mean 1/2.
    #   image 1: (0,0), (1,1) -> 1, (2,2) -> 0: mean 2/3.
    assert result["identity"] == pytest.approx((1 / 2 + 2 / 3) / 2, abs=1e-6)
    # pooled: a 2x2 map upsampled bilinearly (half-pixel centres) to 4x4 takes
    # weights w = (1, .75, .25, 0) from the first cell along each axis.
    #   image 0: the map is w along columns: column 1 -> .75, column 3 -> 0.
    #   image 1: the map is outer(w, w): 1, .5625, .0625 on the diagonal.
    expected = (0.75 / 2 + (1 + 0.5625 + 0.0625) / 3) / 2
    assert result["pooled"] == pytest.approx(expected, abs=1e-6)


def test_key_region_masks_are_validated():
    classifier = _identity_and_pooled_classifier()
    images = np.zeros((2, 4, 4, 1), np.float32)
    good = np.ones((2, 4, 4))
    with pytest.raises(ValueError, match="2 images and 1 masks"):
        analysis.key_region_activation(classifier, images, good[:1], ["identity"])
    with pytest.raises(ValueError, match="4x4, masks of 3x4"):
        analysis.key_region_activation(classifier, images, good[:, :3], ["identity"])
    half = good.copy()
    half[0, 0, 0] = 0.5
    with pytest.raises(ValueError, match=r"binary.*Received values: 0.5, 1$"):
        analysis.key_region_activation(classifier, images, half, ["identity"])
    empty = good.copy()
    empty[1] = 0
    with pytest.raises(ValueError, match="indices: \\[1\\]"):
        analysis.key_region_activation(classifier, images, empty, ["identity"])


# ----------------------------------------------------------------- plots


def test_plot_accuracy_vs_eps_writes_png(tmp_path):
    records = [{"attack": attack, "eps": eps, "accuracy": acc, "model": "m"}
               for attack, eps, acc in [("pgd", 0.0, 0.97), ("pgd", 0.1, 0.6),
                                        ("pgd", 0.2, 0.1), ("fgsm", 0.1, 0.7)]]
    path = plots.plot_accuracy_vs_eps(records, str(tmp_path / "sub" / "eps.png"))
    with open(path, "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="accuracy"):
        plots.plot_accuracy_vs_eps([{"attack": "pgd", "eps": 0.1}], str(tmp_path / "x.png"))


# ----------------------------------------------------------------- analyze.py


def _run(argv):
    """Parses ``argv`` with analyze.py's own parser (from the defaults) and runs
    its main."""
    analyze.FLAGS.unparse_flags()
    analyze.main(analyze.parse_flags(["analyze.py"] + argv))


def test_cli_attention(model_files, tmp_path, capsys):
    out = tmp_path / "attention"
    _run(["attention", f"--models={model_files['target']},{model_files['gray']}",
          "--num_images=2", "--eps=0.2", "--num_steps=3", f"--out={out}"])
    assert (out / "attention.png").stat().st_size > 0
    summary = json.loads((out / "attention.json").read_text())
    assert [m["model"] for m in summary["models"]] == ["target", "gray"]
    assert len(summary["models"][0]["pred_adv"]) == 2
    assert "--eps=0.2" in (out / "flags.txt").read_text()
    assert (out / "git_commit.txt").exists()
    assert "wrote" in capsys.readouterr().out


def test_cli_iterations(model_files, tmp_path):
    out = tmp_path / "iterations"
    _run(["iterations", f"--model={model_files['target']}",
          f"--source_models={model_files['gray']},{model_files['black']}",
          "--source_labels=gray,black", "--white_box", "--eps=0.1,64/256",
          "--iterations=1,2,4", "--num_examples=40", f"--out={out}"])
    records = json.loads((out / "iterations.json").read_text())
    assert len(records) == 3 * 2 * 3
    assert {r["source"] for r in records} == {"target", "gray", "black"}
    assert {r["eps"] for r in records} == {0.1, 0.25}
    assert len((out / "iterations.csv").read_text().strip().splitlines()) == 1 + 18
    assert (out / "iterations.png").stat().st_size > 0


def test_cli_landscape_keras_and_saved_model(model_files, tmp_path):
    out = tmp_path / "landscape"
    _run(["landscape", f"--models={model_files['target']},{model_files['saved_model']}",
          "--num_images=2", "--grid_points=5", "--eps_max=0.2", f"--out={out}"])
    summary = json.loads((out / "landscape.json").read_text())
    keras_model, served = summary["models"]
    # The served export computes the same function as the .keras classifier.
    assert served["loss_at_clean"] == pytest.approx(keras_model["loss_at_clean"], rel=1e-4)
    arrays = np.load(out / "landscape.npz")
    assert arrays["z_target"].shape == (5, 5)
    assert (out / "landscape.png").stat().st_size > 0


def _write_png(path, array):
    tf.io.write_file(str(path), tf.io.encode_png(array.astype(np.uint8)))


def _key_region_folders(tmp_path, digits, num=3, mask_size=8):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for i in range(num):
        image = digits[2][i]
        _write_png(images / f"{i}.png", np.round(image * 255))
        mask = (image > 0.5).astype(np.uint8) * 255
        _write_png(masks / f"{i}.png", mask[:mask_size, :mask_size])
    return images, masks


def test_cli_key_regions(model_files, digits, tmp_path, capsys):
    images, masks = _key_region_folders(tmp_path, digits)
    out = tmp_path / "key_regions"
    _run(["key_regions", f"--models={model_files['target']},{model_files['gray']}",
          f"--images={images}", f"--masks={masks}", "--eps=0.2", "--num_steps=3",
          f"--out={out}"])
    table = (out / "key_regions.md").read_text()
    assert "| model | input | conv2_x | conv3_x | conv4_x | conv5_x |" in table
    for row in ("| target | clean |", "| target | adversarial |", "| gray | clean |",
                "| gray | adversarial |"):
        assert row in table
    assert table in capsys.readouterr().out
    rows = json.loads((out / "key_regions.json").read_text())["activation"]
    assert len(rows) == 4
    assert all(0.0 <= v <= 1.0 for row in rows for v in row["stages"].values())


@pytest.mark.parametrize("argv, message", [
    (["bogus"], "subcommand"),
    ([], "subcommand"),
    (["attention", "--models=/no/such/model.keras"], "no such file"),
    (["iterations", "--model={target}", "--eps=8"], "0-255"),
    (["iterations", "--model={target}", "--eps=abc"], "fraction"),
    (["landscape", "--models={target}", "--num_images=zero"], "num_images"),
    (["attention", "--models={saved_model}"], ".keras"),
    (["key_regions", "--models={target}", "--images={images}", "--masks={masks}"],
     "masks of 4x4"),
])
def test_cli_bad_input_exits_2_with_one_line(argv, message, model_files, digits,
                                             tmp_path, capsys):
    images, masks = _key_region_folders(tmp_path, digits, num=1, mask_size=4)
    values = {**model_files, "images": images, "masks": masks}
    argv = [a.format(**values) for a in argv] + [f"--out={tmp_path / 'out'}"]
    with pytest.raises(SystemExit) as exit_info:
        _run(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
